"""Held-out scores of a trained point model beside the RandomForest, with calibration fitted on validation.

Both models are treated alike: a temperature fitted on the validation split (:mod:`cropcore.training.calibration`),
for crop legends a cropland threshold on p(any crop) chosen on validation, then test metrics with classes decided
cropland first, as the maps do. The network's :class:`~cropcore.models.Calibration` is returned for its checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cropcore.data.points import PointSeries, prepare
from cropcore.models import Calibration
from cropcore.training.baseline import random_forest
from cropcore.training.calibration import (
    confidence_for_precision,
    cropland_threshold,
    expected_calibration_error,
    fit_temperature,
    reliability,
    two_level,
)
from cropcore.training.metrics import classification_report
from cropcore.training.series import predict_series

#: Precision the kept (not "uncertain") pixels should reach on validation data, unless a config says otherwise.
TARGET_PRECISION = 0.85


def scaled(probs: Tensor, temperature: float) -> Tensor:
    """Probabilities after dividing their logits by ``temperature`` (log-probabilities stand in for logits)."""
    return torch.softmax(probs.clamp_min(1e-8).log() / temperature, dim=1)


def calibrate(val_probs: Tensor, val_y: Tensor, crop: Sequence[int] | None, *, precision: float,
              fitted_on: str) -> Calibration:
    """Temperature, cropland threshold and the confidence threshold for ``precision``, all on validation."""
    temperature = fit_temperature(val_probs.clamp_min(1e-8).log(), val_y)
    probs = scaled(val_probs, temperature)
    threshold = cropland_threshold(probs, val_y, crop) if crop else 0.5
    pred = two_level(probs, crop, threshold) if crop else probs.argmax(1)
    conf = probs.gather(1, pred[:, None])[:, 0]
    min_conf = confidence_for_precision(conf, pred == val_y, precision)
    return Calibration(temperature=round(temperature, 4), min_confidence=round(min_conf, 4),
                       target_precision=precision, cropland_threshold=threshold, fitted_on=fitted_on)


def report(test_probs: Tensor, test_y: Tensor, names: list[str], crop: Sequence[int] | None,
           calibration: Calibration) -> dict[str, Any]:
    """Test metrics after calibration, plus the raw ECE, the reliability curve and the uncertain share."""
    probs = scaled(test_probs, calibration.temperature)
    out = classification_report(probs, test_y, names, crop_classes=crop,
                                cropland_threshold=calibration.cropland_threshold if crop else None)
    pred = two_level(probs, crop, calibration.cropland_threshold) if crop else probs.argmax(1)
    conf = probs.gather(1, pred[:, None])[:, 0]
    kept = conf >= calibration.min_confidence
    out["ece_raw"] = expected_calibration_error(test_probs, test_y)
    out["reliability"] = reliability(probs, test_y)
    out["uncertain_share"] = float((~kept).float().mean()) if len(kept) else 0.0
    out["precision_when_certain"] = float((pred[kept] == test_y[kept]).float().mean()) if kept.any() else None
    out["calibration"] = calibration.to_dict()
    return out


def score_points(net: nn.Module, train: PointSeries, val: PointSeries, test: PointSeries, *, mean: list[float],
                 std: list[float], crop: Sequence[int] | None, seed: int, patch_size: int | None = None,
                 location: bool = False, precision: float = TARGET_PRECISION) -> tuple[dict[str, Any], Calibration]:
    """``results["network"]`` and ``results["random_forest"]`` on ``test``; the network's calibration.

    ``location``: the network takes each series' (lat, lon) too.
    """
    def probs_of(series: PointSeries) -> Tensor:
        x, mask = prepare(series, mean, std)
        return predict_series(net, x, mask, patch_size=patch_size, latlon=series.latlon if location else None)

    names = list(train.class_names)
    y_val, y_test = torch.from_numpy(val.y), torch.from_numpy(test.y)
    rf_val, rf_test = random_forest(train, [val, test], mean, std, seed=seed)
    results: dict[str, Any] = {}
    calibrations = {}
    for name, (pv, pt) in {"network": (probs_of(val), probs_of(test)), "random_forest": (rf_val, rf_test)}.items():
        calibrations[name] = calibrate(pv, y_val, crop, precision=precision,
                                       fitted_on=f"validation split ({len(val)} samples)")
        results[name] = report(pt, y_test, names, crop, calibrations[name])
    return results, calibrations["network"]
