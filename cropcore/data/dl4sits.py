"""Reader for the dl4sits CSV files (Pelletier et al., IGARSS 2019): 73 dates x 10 bands per pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cropcore.data.points import PointSeries
from cropcore.errors import DatasetFormatError

DL4SITS_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
DL4SITS_DATES = 73


def is_dl4sits(path: str | Path) -> bool:
    """True when ``path`` is a CSV whose header looks like ``class, objectID, b0...``."""
    if Path(path).suffix.lower() != ".csv":
        return False
    header = pd.read_csv(path, nrows=0).columns
    return len(header) == 2 + DL4SITS_DATES * len(DL4SITS_BANDS) and header[2] == "b0"


def read_class_map(path: str | Path) -> dict[int, str]:
    """``class_map.txt`` (value,class,colour) as {value: name}."""
    lines = Path(path).read_text().splitlines()[1:]  # colours contain commas: "1,Bare Ground,rgb(1, 2, 3)"
    return {int(v): name for v, name, _ in (line.split(",", 2) for line in lines if line.strip())}


def read_dl4sits(path: str | Path, *, class_map: dict[int, str] | None = None) -> PointSeries:
    """Read a dl4sits CSV (date-major columns ``b0..b729``, reflectance x 1e4) into a :class:`PointSeries`.

    Labels 0..K-1 are kept; class-map codes are re-indexed to 0..K-1 in the order of
    ``class_map`` (default: ``class_map.txt`` beside the file).
    """
    path = Path(path)
    table = pd.read_csv(path)
    n_values = DL4SITS_DATES * len(DL4SITS_BANDS)
    if table.shape[1] != 2 + n_values:
        raise DatasetFormatError(
            f"{path} has {table.shape[1]} columns; a dl4sits CSV has class, objectID and {n_values} values"
        )
    if class_map is None:
        class_map = read_class_map(path.with_name("class_map.txt"))
    codes = sorted(class_map)
    labels = table.iloc[:, 0].astype(int)
    if set(labels) <= set(range(len(codes))):  # already 0..K-1 in class-map order (the published files)
        y = labels.to_numpy(np.int64)
    elif set(labels) <= set(codes):
        y = labels.map({code: i for i, code in enumerate(codes)}).to_numpy(np.int64)
    else:
        raise DatasetFormatError(
            f"{path}: class codes {sorted(set(labels))} do not fit the class map {codes}"
        )
    x = table.iloc[:, 2:].to_numpy(np.float32).reshape(-1, DL4SITS_DATES, len(DL4SITS_BANDS)) / 1e4
    return PointSeries(
        x=x,
        y=y,
        sample_id=table.iloc[:, 1].astype(str).to_numpy(),
        bands=DL4SITS_BANDS,
        time_axis=tuple(f"date{i}" for i in range(DL4SITS_DATES)),
        class_names=tuple(class_map[c] for c in codes),
    )
