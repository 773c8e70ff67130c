"""Model registry: ``build_model(name, **kw)``, ``list_models()`` and ``load_checkpoint``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cropcore.models.agrunet import AgrUNet
from cropcore.models.checkpoint import load_checkpoint, save_checkpoint
from cropcore.models.tempcnn import TempCNN, predict_cube

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "agrunet": AgrUNet,
    "tempcnn": TempCNN,
}

#: Models that classify single pixel time series (B, T, C) rather than patches (B, T, C, H, W).
PIXEL_MODELS = frozenset({"tempcnn"})


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model; unknown names raise ``KeyError`` listing the valid ones."""
    try:
        factory = _REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; valid names: {', '.join(list_models())}") from None
    return factory(**kwargs)


__all__ = [
    "PIXEL_MODELS",
    "AgrUNet",
    "TempCNN",
    "build_model",
    "list_models",
    "load_checkpoint",
    "predict_cube",
    "save_checkpoint",
]
