"""What a checkpoint says about its model: :class:`ModelMeta`, read and written as the file's JSON metadata.

The JSON layout is the one checkpoints have always had (``"model"`` is the registered architecture,
``"norm"`` holds ``mean``/``std`` of reflectance, ``"legend"`` a list of ``{"id", "name", "color",
"is_crop"}``), so files written before this class existed load unchanged and re-save to the same JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cropcore.errors import CheckpointError

Kind = Literal["pixel", "patch"]
#: Keys every checkpoint's metadata holds.
REQUIRED = ("model", "model_kwargs", "bands", "time_axis", "norm", "legend")


@dataclass(frozen=True)
class LegendEntry:
    """One output class: its index, name, map colour and whether it is a crop (``None``: not said)."""

    id: int
    name: str
    color: str
    is_crop: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "color": self.color, "is_crop": self.is_crop}


@dataclass(frozen=True)
class TimeAxis:
    """The model's time steps: ``season_months`` (``M11`` .. ``M10``) or ``dates`` (any dates, masked)."""

    kind: str
    steps: tuple[str, ...]
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "steps": list(self.steps)}
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Normalisation:
    """Per-band mean and standard deviation of the inputs (reflectance), in band order."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    units: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": list(self.mean), "std": list(self.std)}
        if self.units is not None:
            out["units"] = self.units
        return out


@dataclass(frozen=True)
class Calibration:
    """How far to trust the model's probabilities, fitted on validation data after training.

    ``temperature`` divides the logits (temperature scaling); ``min_confidence`` is the calibrated top-class
    probability below which a pixel is reported "uncertain", chosen on validation so that the kept pixels reach
    ``target_precision``; ``cropland_threshold`` is the calibrated probability of "any crop class" from which a
    pixel counts as cropland. ``fitted_on`` says which data they were fitted on.
    """

    temperature: float = 1.0
    min_confidence: float = 0.0
    target_precision: float | None = None
    cropland_threshold: float = 0.5
    fitted_on: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "min_confidence": self.min_confidence,
                "target_precision": self.target_precision, "cropland_threshold": self.cropland_threshold,
                "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Calibration:
        return cls(temperature=float(raw.get("temperature", 1.0)), min_confidence=float(raw.get("min_confidence", 0.0)),
                   target_precision=None if raw.get("target_precision") is None else float(raw["target_precision"]),
                   cropland_threshold=float(raw.get("cropland_threshold", 0.5)), fitted_on=raw.get("fitted_on"))


@dataclass(frozen=True)
class ModelMeta:
    """Typed checkpoint metadata; :meth:`from_dict` validates, :meth:`to_dict` gives the stored JSON back.

    ``kind`` is not stored in files: it comes from the registered architecture (``pixel`` models classify
    one series (B, T, C), ``patch`` models a (B, T, C, H, W) patch). ``sha256`` is the checkpoint file's
    checksum, set when the file is loaded. Keys this class does not know are kept in ``extra``.
    """

    name: str
    architecture: str
    kind: Kind
    model_kwargs: Mapping[str, Any] = field(hash=False)
    bands: tuple[str, ...]
    time_axis: TimeAxis
    norm: Normalisation
    legend: tuple[LegendEntry, ...]
    patch_size: int | None = None
    data_kind: str | None = None
    training_data: str | None = None
    test_sample_ids: tuple[str, ...] | None = None
    test_fold: int | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict, hash=False)
    calibration: Calibration | None = None
    sha256: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def num_classes(self) -> int:
        return len(self.legend)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.legend]

    @property
    def colors(self) -> dict[int, str]:
        """Colour of each class id."""
        return {c.id: c.color for c in self.legend}

    @property
    def crop_ids(self) -> list[int]:
        """Ids of the classes marked as crops."""
        return [c.id for c in self.legend if c.is_crop]

    @property
    def is_pixel(self) -> bool:
        return self.kind == "pixel"

    def with_sha256(self, sha256: str) -> ModelMeta:
        return replace(self, sha256=sha256)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, kind: Kind, where: str = "checkpoint") -> ModelMeta:
        """Parse and check stored metadata (``where`` names the file in error messages)."""
        missing = [k for k in REQUIRED if k not in raw]
        if missing:
            raise CheckpointError(f"{where} metadata lacks {missing}")
        known = {"name", *REQUIRED, "patch_size", "data_kind", "training_data", "test_sample_ids", "test_fold",
                 "metrics", "calibration", "sha256"}
        try:
            axis, norm = raw["time_axis"], raw["norm"]
            meta = cls(
                name=str(raw.get("name") or raw["model"]), architecture=str(raw["model"]), kind=kind,
                model_kwargs=dict(raw["model_kwargs"]), bands=tuple(map(str, raw["bands"])),
                time_axis=TimeAxis(str(axis["kind"]), tuple(map(str, axis.get("steps", ()))), axis.get("note")),
                norm=Normalisation(tuple(map(float, norm.get("mean", ()))), tuple(map(float, norm.get("std", ()))),
                                   norm.get("units")),
                legend=tuple(LegendEntry(int(c["id"]), str(c["name"]), str(c["color"]), c.get("is_crop"))
                             for c in raw["legend"]),
                patch_size=raw.get("patch_size"), data_kind=raw.get("data_kind"),
                training_data=raw.get("training_data"),
                test_sample_ids=None if raw.get("test_sample_ids") is None else tuple(raw["test_sample_ids"]),
                test_fold=raw.get("test_fold"), metrics=dict(raw.get("metrics", {})), sha256=raw.get("sha256"),
                calibration=None if raw.get("calibration") is None else Calibration.from_dict(raw["calibration"]),
                extra={k: v for k, v in raw.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{where} metadata is malformed: {type(exc).__name__}: {exc}") from None
        meta.validate(where)
        return meta

    def validate(self, where: str = "checkpoint") -> None:
        """Raise :class:`CheckpointError` when bands, classes, legend ids and statistics disagree."""
        n_bands = len(self.bands)
        if self.model_kwargs.get("in_channels") != n_bands:
            raise CheckpointError(f"{where}: model takes {self.model_kwargs.get('in_channels')} bands but meta "
                                  f"lists {n_bands}")
        if self.model_kwargs.get("num_classes") != self.num_classes:
            raise CheckpointError(f"{where}: predicts {self.model_kwargs.get('num_classes')} classes, legend has "
                                  f"{self.num_classes}")
        if [c.id for c in self.legend] != list(range(self.num_classes)):
            raise CheckpointError(f"{where}: legend ids must be 0..K-1 in order")
        for key in ("mean", "std"):
            if len(getattr(self.norm, key)) != n_bands:
                raise CheckpointError(f"{where}: norm[{key!r}] must have one value per band ({n_bands})")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able metadata stored in a checkpoint file (without ``kind`` and ``sha256``)."""
        out: dict[str, Any] = {
            "name": self.name, "model": self.architecture, "model_kwargs": dict(self.model_kwargs),
            "bands": list(self.bands), "time_axis": self.time_axis.to_dict(), "norm": self.norm.to_dict(),
            "legend": [c.to_dict() for c in self.legend],
        }
        optional = {"data_kind": self.data_kind, "test_sample_ids": _list(self.test_sample_ids),
                    "test_fold": self.test_fold, "metrics": dict(self.metrics) or None, "patch_size": self.patch_size,
                    "training_data": self.training_data,
                    "calibration": None if self.calibration is None else self.calibration.to_dict()}
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update(self.extra)
        return out


def _list(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else list(values)
