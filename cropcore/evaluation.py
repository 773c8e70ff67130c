"""Score a saved checkpoint on a labelled point file (WorldCereal long/wide parquet or dl4sits CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cropcore.data.dl4sits import is_dl4sits, read_dl4sits
from cropcore.data.points import PointSeries, concat, prepare
from cropcore.data.worldcereal import read_worldcereal
from cropcore.errors import CheckpointError, DatasetFormatError
from cropcore.metrics import classification_report
from cropcore.models import PIXEL_MODELS, load_checkpoint


def read_labelled(path: str | Path) -> PointSeries:
    """Read any supported labelled point file, keeping rows with a legend class."""
    path = Path(path)
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
    if meta["model"] not in PIXEL_MODELS:
        raise CheckpointError(f"{meta['model']!r} is a patch model; point files are evaluated with pixel models")
    names = [c["name"] for c in meta["legend"]]
    if len(series.time_axis) != len(meta["time_axis"]["steps"]) or list(series.class_names) != names:
        raise CheckpointError(f"{checkpoint} was trained for another time axis or legend than {data} provides")
    if split == "test":
        series = series.subset(np.isin(series.sample_id, meta["test_sample_ids"]))
        if len(series) == 0:
            raise DatasetFormatError(f"{data} holds none of the checkpoint's held-out sample ids")
    x, mask = prepare(series, meta["norm"]["mean"], meta["norm"]["std"])
    with torch.inference_mode():
        probs = torch.softmax(model(torch.from_numpy(x), torch.from_numpy(mask)), dim=1)
    crop = [c["id"] for c in meta["legend"] if c.get("is_crop")] or None
    report = classification_report(probs, torch.from_numpy(series.y), names, crop_classes=crop)
    report.update({"checkpoint": str(checkpoint), "data": [Path(p).name for p in data], "split": split})
    return report
