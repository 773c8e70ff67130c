"""The model registry: architectures by name, with the kind of input each takes.

``pixel`` models classify one time series per pixel (B, T, C); ``patch`` models a (B, T, C, H, W) patch.
This is the one place that says which is which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from cropcore.models.agrunet import AgrUNet
from cropcore.models.meta import Kind, LegendEntry, ModelMeta, Normalisation, TimeAxis
from cropcore.models.presto import PrestoClassifier
from cropcore.models.tempcnn import TempCNN


@dataclass(frozen=True)
class Entry:
    """A registered architecture: its factory, input kind and whether ``forward`` takes ``latlon`` (B, 2)."""

    factory: Callable[..., nn.Module]
    kind: Kind
    uses_location: bool = False


_REGISTRY: dict[str, Entry] = {
    "agrunet": Entry(AgrUNet, "patch"),
    "presto": Entry(PrestoClassifier, "pixel", uses_location=True),
    "tempcnn": Entry(TempCNN, "pixel"),
}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def _entry(name: str) -> Entry:
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; valid names: {', '.join(list_models())}") from None


def model_kind(name: str) -> Kind:
    """``"pixel"`` or ``"patch"`` for a registered architecture."""
    return _entry(name).kind


def uses_location(name: str) -> bool:
    """Whether the architecture's ``forward(x, mask, latlon=...)`` takes each series' (lat, lon) in degrees."""
    return _entry(name).uses_location


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model; unknown names raise ``KeyError`` listing the valid ones."""
    return _entry(name).factory(**kwargs)


def untrained_meta(name: str, *, bands: Sequence[str] | int, classes: int, **kwargs: object) -> ModelMeta:
    """Metadata of a freshly built model (identity normalisation, grey classes), for tests and benchmarks.

    ``bands``: band names, or a count (named ``b0``, ``b1``, ...); ``kwargs`` as for :func:`build_model`.
    """
    names = tuple(f"b{i}" for i in range(bands)) if isinstance(bands, int) else tuple(bands)
    return ModelMeta(
        name=f"untrained {name}", architecture=name, kind=model_kind(name),
        model_kwargs={"in_channels": len(names), "num_classes": classes, **kwargs}, bands=names,
        time_axis=TimeAxis("dates", ()), norm=Normalisation((0.0,) * len(names), (1.0,) * len(names)),
        legend=tuple(LegendEntry(i, f"class {i}", "#808080") for i in range(classes)),
    )
