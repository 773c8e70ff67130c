"""Patch classifiers: output shapes, registry, and input errors that say what to change."""

from __future__ import annotations

import pytest
import torch

from cropcore.errors import ShapeError
from cropcore.patches.registry import build_patch_model, list_patch_models


@pytest.mark.parametrize(("name", "kwargs", "classes"), [
    ("resnet50", {"width": 8, "num_classes": 19}, 19),
    ("small_cnn", {"width": 4}, 1),
    ("cnn_vit", {"dim": 32, "depth": 1, "heads": 2, "stem": 8}, 1),
    ("cnn_vit", {"dim": 32, "depth": 1, "heads": 2, "stem": 8, "pool": "mean"}, 1),
])
def test_models_give_one_row_of_logits_per_patch(name: str, kwargs: dict, classes: int) -> None:
    model = build_patch_model(name, in_channels=12, **kwargs).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 12, 120, 120)).shape == (2, classes)
        assert model(torch.randn(1, 12, 60, 60)).shape == (1, classes)  # other sizes (CNN-ViT: interpolated)


def test_resnet50_has_the_resnet50_layout() -> None:
    model = build_patch_model("resnet50", in_channels=12, num_classes=19)
    assert sum(p.numel() for p in model.parameters()) == 23_575_187  # torchvision's 25.56 M minus the
    # 1000-class head (2.05 M), plus 19 outputs and 12 input bands
    assert model.stem[0][0].in_channels == 12


def test_registry_lists_and_refuses() -> None:
    assert list_patch_models() == ["cnn_vit", "resnet50", "small_cnn"]
    with pytest.raises(KeyError, match="valid names: cnn_vit, resnet50, small_cnn"):
        build_patch_model("vgg")


@pytest.mark.parametrize(("name", "shape", "message"), [
    ("small_cnn", (2, 10, 120, 120), "built for 12 bands, got 10; give the bands B01"),
    ("small_cnn", (12, 120, 120), r"add a batch axis with x\[None\]"),
    ("resnet50", (1, 12, 16, 16), "at least 32 x 32"),
    ("cnn_vit", (1, 12, 110, 120), "multiples of 20, got 110 x 120; crop or pad the patch to 100 x 120"),
])
def test_bad_inputs_say_what_to_change(name: str, shape: tuple, message: str) -> None:
    model = build_patch_model(name, in_channels=12, width=4) if name != "cnn_vit" else build_patch_model(
        name, in_channels=12, dim=16, depth=1, heads=2, stem=8)
    with pytest.raises(ShapeError, match=message):
        model(torch.randn(*shape))


def test_cnn_vit_refuses_bad_settings() -> None:
    with pytest.raises(ShapeError, match="pool must be 'cls' or 'mean'"):
        build_patch_model("cnn_vit", pool="max")
    with pytest.raises(ShapeError, match="not a multiple of 4 x token = 20"):
        build_patch_model("cnn_vit", image_size=130)
