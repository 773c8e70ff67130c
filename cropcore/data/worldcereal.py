"""Readers for WorldCereal reference extractions (long dekadal geoparquet and wide monthly parquet).

Both are resampled onto one 12-step monthly axis, the *season axis*: calendar months November of the
year before the sample's ``year`` to October of that year (the demo patch covers Nov 2020 - Oct 2021).
France 2023 (dekads Sep 2022 - Jan 2024) keeps Nov 2022 - Oct 2023, i.e. winter crops from sowing and
summer crops to harvest; East Africa 2017 (monthly Dec 2016 - Nov 2017) keeps Dec 2016 - Oct 2017, the
whole rainy season, with November 2016 missing (masked). Several observations in a month are averaged.
Bands B02-B08, B11, B12 (B8A is empty in these files); DN 0 and 65535 are missing; reflectance = DN / 1e4.
Codes (``ewoc_code``) are mapped with ``class_mappings.json`` to :data:`cropcore.legend.CROP_LEGEND`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cropcore.data.points import PointSeries
from cropcore.errors import DatasetFormatError
from cropcore.legend import CROP_LEGEND, CROPTYPE24_TO_LEGEND, S2_SCALE
from cropcore.settings import data_dir

BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
SEASON_MONTHS = (11, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
TIME_AXIS = tuple(f"M{m:02d}" for m in SEASON_MONTHS)  # season axis, November first
NODATA = (0, 65535)
_WIDE = re.compile(r"^OPTICAL-(B\w\w)-ts(\d+)-\d+m$")


def load_class_mappings(near: str | Path | None = None) -> dict[str, dict[str, str]]:
    """``class_mappings.json`` next to ``near`` if present, else from the sample-data directory."""
    if near is not None and (Path(near).parent / "class_mappings.json").is_file():
        path = Path(near).parent / "class_mappings.json"
    else:
        path = data_dir("worldcereal/class_mappings.json") / "worldcereal" / "class_mappings.json"
    return json.loads(path.read_text())


def ewoc_to_legend(codes: pd.Series, mappings: dict[str, dict[str, str]]) -> np.ndarray:
    """Map ``ewoc_code`` values to CROP_LEGEND indices; -1 for codes the legend ignores."""
    landcover, croptype = mappings["LANDCOVER10"], mappings["CROPTYPE24"]

    def one(code: str) -> int:
        lc = landcover.get(code)
        if lc is None or lc == "ignore":
            return -1
        if lc != "temporary_crops":
            return 0
        return CROPTYPE24_TO_LEGEND.get(croptype.get(code, "ignore"), -1)

    return np.array([one(str(int(c))) for c in codes], dtype=np.int64)


def season_index(dates: pd.Series, year: pd.Series) -> np.ndarray:
    """Position of each date on the season axis of its sample's year; -1 outside the season."""
    months = (dates.dt.year - (year - 1)) * 12 + dates.dt.month - 11
    return np.where((months >= 0) & (months < 12), months, -1)


def _scale(values: np.ndarray) -> np.ndarray:
    out = values.astype(np.float32)
    out[np.isin(values, NODATA) | ~np.isfinite(out)] = np.nan
    return out * S2_SCALE


def read_long(table: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Long format (one row per sample and date, columns ``S2-L2A-Bxx``) -> (N, 12, 9), per-sample rows."""
    cols = [f"S2-L2A-{b}" for b in BANDS]
    table = table.assign(_step=season_index(pd.to_datetime(table["timestamp"]), _year(table)))
    table = table[table["_step"] >= 0]
    values = pd.DataFrame(_scale(table[cols].to_numpy()), columns=list(BANDS), index=table.index)
    values[["sample_id", "_step"]] = table[["sample_id", "_step"]]
    monthly = values.groupby(["sample_id", "_step"]).mean()
    samples = table.groupby("sample_id", sort=True).first()
    x = np.full((len(samples), 12, len(BANDS)), np.nan, np.float32)
    pos = samples.index.get_indexer(monthly.index.get_level_values(0))
    x[pos, monthly.index.get_level_values(1).to_numpy(int)] = monthly.to_numpy(np.float32)
    return x, samples.reset_index()


def read_wide(table: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Wide format (``OPTICAL-B02-ts0-10m`` ...; ts0 = ``start_date``) -> (N, 12, 9), per-sample rows."""
    found = {(m.group(1), int(m.group(2))): c for c in table.columns if (m := _WIDE.match(c))}
    n_ts = 1 + max(ts for _, ts in found)
    x = np.full((len(table), 12, len(BANDS)), np.nan, np.float32)
    start = pd.to_datetime(table["start_date"])
    year = _year(table)
    rows = np.arange(len(table))
    for ts in range(n_ts):
        step = season_index(start + pd.DateOffset(months=ts), year)
        ok = step >= 0
        for j, band in enumerate(BANDS):
            if (band, ts) in found:
                x[rows[ok], step[ok], j] = _scale(table[found[band, ts]].to_numpy())[ok]
    return x, table.reset_index(drop=True)


def _year(table: pd.DataFrame) -> pd.Series:
    if "year" in table:
        return table["year"].astype(int)
    return pd.to_datetime(table["valid_time"]).dt.year


def read_worldcereal(path: str | Path) -> PointSeries:
    """Read a WorldCereal extraction file (long or wide, parquet or geoparquet) onto the season axis."""
    path = Path(path)
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"{path} is not a readable parquet file: {exc}") from None
    if "ewoc_code" not in table or "sample_id" not in table:
        raise DatasetFormatError(f"{path} lacks ewoc_code/sample_id columns: not a WorldCereal extraction")
    if "timestamp" in table and "S2-L2A-B02" in table:
        x, samples = read_long(table)
    elif any(_WIDE.match(c) for c in table.columns):
        x, samples = read_wide(table)
    else:
        raise DatasetFormatError(
            f"{path}: found neither long (timestamp, S2-L2A-B02 ...) nor wide (OPTICAL-B02-ts0-10m ...) "
            "columns"
        )
    y = ewoc_to_legend(samples["ewoc_code"], load_class_mappings(path))
    return PointSeries(
        x=x,
        y=y,
        sample_id=samples["sample_id"].astype(str).to_numpy(),
        bands=BANDS,
        time_axis=TIME_AXIS,
        class_names=tuple(c.name for c in CROP_LEGEND),
    )
