"""Score a saved checkpoint on a labelled point file (WorldCereal long/wide parquet or dl4sits CSV).

Pixel models classify each series; patch models (AgrUNet) see each series as a uniform patch (the field
covers the whole patch, :func:`cropcore.data.composed.uniform_patches`) and predict the mean of its pixel
probabilities. A calibrated checkpoint is scored as it maps: its temperature, cropland-first classes and
uncertain share (:func:`cropcore.training.scoring.report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cropcore.data.belgium import read_belgium_2021
from cropcore.data.dl4sits import is_dl4sits, read_dl4sits
from cropcore.data.points import PointSeries, concat, prepare
from cropcore.data.worldcereal import read_worldcereal
from cropcore.errors import CheckpointError, DatasetFormatError
from cropcore.models import load_checkpoint, uses_location
from cropcore.training.metrics import classification_report
from cropcore.training.scoring import report as calibrated_report
from cropcore.training.series import predict_series


def read_labelled(path: str | Path) -> PointSeries:
    """Read any supported labelled point file (or the Belgian 2021 folder), keeping rows with a legend class."""
    path = Path(path)
    if path.is_dir():
        return read_belgium_2021(path)[0].labelled()
    if not path.is_file():
        raise DatasetFormatError(f"no file at {path}")
    series = read_dl4sits(path) if is_dl4sits(path) else read_worldcereal(path)
    return series.labelled()


def evaluate_file(
    checkpoint: str | Path, data: list[str | Path], *, split: str = "all"
) -> dict[str, Any]:
    """Metrics of ``checkpoint`` on the files ``data`` together; ``split="test"``: held-out ids only."""
    series = concat([read_labelled(path) for path in data])
    model, meta = load_checkpoint(checkpoint, bands=list(series.bands))
    names = meta.class_names
    if len(series.time_axis) != len(meta.time_axis.steps) or list(series.class_names) != names:
        raise CheckpointError(f"{checkpoint} was trained for another time axis or legend than {data} provides")
    if split == "test":
        series = series.subset(np.isin(series.sample_id, list(meta.test_sample_ids or ())))
        if len(series) == 0:
            raise DatasetFormatError(f"{data} holds none of the checkpoint's held-out sample ids")
    location = uses_location(meta.architecture)
    if location and series.latlon is None:
        raise DatasetFormatError(f"{checkpoint} needs each sample's lat/lon, which {data} do not all provide")
    x, mask = prepare(series, list(meta.norm.mean), list(meta.norm.std))
    patch_size = None if meta.is_pixel else meta.patch_size or 32
    probs = predict_series(model, x, mask, patch_size=patch_size, latlon=series.latlon if location else None)
    y, crop = torch.from_numpy(series.y), meta.crop_ids or None
    report = (classification_report(probs, y, names, crop_classes=crop) if meta.calibration is None
              else calibrated_report(probs, y, names, crop, meta.calibration))
    report.update({"checkpoint": str(checkpoint), "data": [Path(p).name for p in data], "split": split})
    return report
