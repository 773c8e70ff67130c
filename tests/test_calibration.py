"""Temperature scaling, calibration error, the thresholds stored in checkpoints and cropland-first decisions."""

from __future__ import annotations

import pytest
import torch

from cropcore.training.calibration import (
    confidence_for_precision,
    cropland_threshold,
    expected_calibration_error,
    fit_temperature,
    two_level,
)
from cropcore.training.metrics import classification_report


def _sampled(temperature: float, n: int = 20000, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits / temperature): the true temperature is known."""
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(n, k, generator=gen)
    y = torch.multinomial(torch.softmax(logits / temperature, 1), 1, generator=gen)[:, 0]
    return logits, y


def test_temperature_is_recovered_and_lowers_the_calibration_error():
    logits, y = _sampled(2.0)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(2.0, rel=0.05)
    raw = expected_calibration_error(torch.softmax(logits, 1), y)
    fitted = expected_calibration_error(torch.softmax(logits / t, 1), y)
    assert raw > 0.1 and fitted < 0.02
    assert torch.equal(torch.softmax(logits / t, 1).argmax(1), logits.argmax(1))


def test_confidence_threshold_for_a_stated_precision():
    conf = torch.tensor([0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    correct = torch.tensor([True, True, True, False, True, False])
    assert confidence_for_precision(conf, correct, 1.0) == pytest.approx(0.8)
    assert confidence_for_precision(conf, correct, 0.8) == pytest.approx(0.6)  # 4 of the top 5 are right
    assert confidence_for_precision(conf, torch.zeros(6, dtype=torch.bool), 0.5) == 1.0


def test_cropland_first_decision_and_its_threshold():
    # class 0 non-crop, classes 1 and 2 crops: crops together outweigh the non-crop class though neither does alone
    probs = torch.tensor([[0.4, 0.3, 0.3], [0.8, 0.1, 0.1], [0.1, 0.2, 0.7]])
    assert two_level(probs, [1, 2], 0.5).tolist() == [1, 0, 2]
    assert two_level(probs, [1, 2], 0.65).tolist() == [0, 0, 2]
    patch = probs.T.reshape(1, 3, 3, 1)  # (B, K, H, W) works too
    assert two_level(patch, [1, 2], 0.5).flatten().tolist() == [1, 0, 2]
    y = torch.tensor([0, 0, 2])
    t = cropland_threshold(probs, y, [1, 2])
    assert 0.6 < t <= 0.9  # every threshold that separates p(crop) 0.6 from 0.9 is best; the middle is taken
    report = classification_report(probs, y, ["grass", "maize", "wheat"], crop_classes=[1, 2], cropland_threshold=t)
    assert report["oa"] == 1.0 and report["crop_balanced_accuracy"] == 1.0 and report["noncrop_recall"] == 1.0
    argmax = classification_report(probs, y, ["grass", "maize", "wheat"], crop_classes=[1, 2])
    assert argmax["noncrop_recall"] == 1.0 and argmax["oa"] == 1.0  # argmax picks class 0 for row 0 too
