"""The patch-classifier registry: architectures by name, apart from the time-series models of
:mod:`cropcore.models.registry` (patch classifiers take one date, (B, bands, H, W), and return one row of
logits per patch)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cropcore.patches.models import CNNViT, ResNet50, SmallCNN

_REGISTRY: dict[str, Callable[..., nn.Module]] = {"cnn_vit": CNNViT, "resnet50": ResNet50, "small_cnn": SmallCNN}


def list_patch_models() -> list[str]:
    """Names accepted by :func:`build_patch_model`."""
    return sorted(_REGISTRY)


def build_patch_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered patch classifier; unknown names raise ``KeyError`` listing the valid ones."""
    try:
        factory = _REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown patch model {name!r}; valid names: {', '.join(list_patch_models())}") from None
    return factory(**kwargs)
