"""classification_report against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from cropcore.training.metrics import classification_report, format_report


def test_report_matches_hand_computed_values():
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 0])
    probs = torch.nn.functional.one_hot(pred, 3).float()
    r = classification_report(probs, target, ["a", "b", "c"], crop_classes=[1, 2])
    assert r["oa"] == pytest.approx(4 / 6)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    f1 = [0.5, 0.8, 2 / 3]
    assert r["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert r["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert r["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert 0 <= r["crop_auc"] <= 1
    assert "confusion matrix" in format_report(r)


def test_segmentation_maps_and_ignore_index():
    target = torch.tensor([[[0, 1], [1, -1]]])
    probs = torch.nn.functional.one_hot(target.clamp_min(0), 2).permute(0, 3, 1, 2).float()
    r = classification_report(probs, target, ["x", "y"])
    assert r["n"] == 3 and r["oa"] == 1.0 and r["dice"] == 1.0
