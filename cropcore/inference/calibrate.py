"""From class probabilities to the map: temperature, cropland first, crop type within it, "uncertain".

A :class:`Decision` holds how a checkpoint's outputs become map layers: its logits are divided by the
calibration's temperature before the softmax; the cropland probability is the sum of the crop classes'
probabilities; a pixel of a calibrated checkpoint is cropland when that reaches the cropland threshold, and then
takes the most probable crop class, else the most probable other class (crop type within cropland). The
confidence is the probability of the chosen class, and pixels less confident than ``min_confidence`` are
:data:`~cropcore.inference.options.UNCERTAIN` in the map; the class they would have had stays in ``class_raw``,
so :func:`with_min_confidence` moves the threshold without running the model again.

An uncalibrated checkpoint (``calibration=None``) keeps the maps it always gave: temperature 1, no uncertain
pixels, each pixel its most probable class; its cropland layer is still exported, with the nominal threshold
0.5. Models whose legend marks no crop class get neither a cropland layer nor a cropland rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

from cropcore.inference.options import NODATA, UNCERTAIN, check_min_confidence
from cropcore.models.meta import Calibration, ModelMeta

Source = Literal["checkpoint", "user", "default"]


@dataclass(frozen=True)
class Layers:
    """The map of one block: final and raw classes (uint8), confidence (float32, NaN = no data), cropland
    probability in percent (uint8, 255 = no data; ``None`` without crop classes), probabilities if kept."""

    classes: np.ndarray
    raw: np.ndarray
    confidence: np.ndarray
    cropland: np.ndarray | None
    probabilities: np.ndarray | None = None


@dataclass(frozen=True)
class Decision:
    """How a checkpoint's calibrated probabilities become the map (see the module docstring)."""

    calibration: Calibration
    calibrated: bool
    crop_ids: tuple[int, ...]
    min_confidence: float
    min_confidence_source: Source

    @classmethod
    def for_model(cls, meta: ModelMeta, min_confidence: float | None = None) -> Decision:
        """The checkpoint's decision; ``min_confidence`` (0-1) replaces the checkpoint's threshold."""
        calibration = meta.calibration or Calibration()
        source: Source = "checkpoint" if meta.calibration is not None else "default"
        if min_confidence is not None:
            source = "user"
        value = calibration.min_confidence if min_confidence is None else check_min_confidence(min_confidence)
        return cls(calibration, meta.calibration is not None, tuple(meta.crop_ids), value, source)

    @property
    def temperature(self) -> float:
        return self.calibration.temperature

    @property
    def two_level(self) -> bool:
        """Whether classes follow the cropland rule (calibrated checkpoints with crop classes)."""
        return self.calibrated and bool(self.crop_ids)

    def decide(self, probabilities: np.ndarray, valid: np.ndarray, *, keep: bool = False) -> Layers:
        """The layers of a block of calibrated probabilities (K, n, m); ``valid`` (n, m) marks pixels with data."""
        raw = self._choose(probabilities)
        confidence = np.take_along_axis(probabilities, raw[np.newaxis], 0)[0].astype(np.float32)
        classes = np.where(confidence < self.min_confidence, UNCERTAIN, raw).astype(np.uint8)
        raw = raw.astype(np.uint8)
        for layer in (classes, raw):
            layer[~valid] = NODATA
        confidence[~valid] = np.nan
        cropland = None
        if self.crop_ids:
            share = probabilities[list(self.crop_ids)].sum(0)
            cropland = np.where(valid, np.rint(np.clip(share, 0, 1) * 100), NODATA).astype(np.uint8)
        return Layers(classes, raw, confidence, cropland, probabilities if keep else None)

    def _choose(self, p: np.ndarray) -> np.ndarray:
        if not self.two_level:
            return p.argmax(0)
        return cropland_first(p, self.crop_ids, self.calibration.cropland_threshold)

    def manifest(self) -> dict[str, Any]:
        """What the run manifest records: each value and where it came from."""
        fitted: Source = "checkpoint" if self.calibrated else "default"
        return {
            "temperature": self.temperature, "temperature_source": fitted,
            "min_confidence": self.min_confidence, "min_confidence_source": self.min_confidence_source,
            "cropland_threshold": self.calibration.cropland_threshold, "cropland_threshold_source": fitted,
            "classes": "crop type within cropland" if self.two_level else "most probable class",
            "target_precision": self.calibration.target_precision, "fitted_on": self.calibration.fitted_on,
        }


def cropland_first(p: np.ndarray, crop_ids: Sequence[int], threshold: float) -> np.ndarray:
    """Classes of probabilities ``p`` (K, ...): the most probable crop class where the crop classes' probabilities
    add up to ``threshold``, else the most probable other class."""
    crop = np.asarray(crop_ids)
    best_crop = crop[p[crop].argmax(0)]
    other = np.setdiff1d(np.arange(p.shape[0]), crop)
    if not other.size:  # every class is a crop
        return best_crop
    return np.where(p[crop].sum(0) >= threshold, best_crop, other[p[other].argmax(0)])


def with_min_confidence(prediction: xr.Dataset, min_confidence: float) -> xr.Dataset:
    """``prediction`` with its ``class`` layer re-derived from ``class_raw`` and ``confidence`` for another
    threshold (0-1): no model run, lazy arrays stay lazy."""
    check_min_confidence(min_confidence)
    raw = prediction["class_raw"]
    uncertain = (prediction["confidence"] < min_confidence) & (raw != NODATA)
    classes = xr.where(uncertain, np.uint8(UNCERTAIN), raw, keep_attrs=True).astype(np.uint8)
    return prediction.assign({"class": classes})
