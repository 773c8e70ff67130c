"""Readers for WorldCereal reference extractions (long dekadal geoparquet and wide monthly parquet).

Both are resampled onto one 12-step monthly axis, the *season axis*: calendar months November of the
year before the sample's ``year`` to October of that year (the demo patch covers Nov 2020 - Oct 2021).
France 2023 (dekads Sep 2022 - Jan 2024) keeps Nov 2022 - Oct 2023, i.e. winter crops from sowing and
summer crops to harvest; East Africa 2017 (monthly Dec 2016 - Nov 2017) keeps Dec 2016 - Oct 2017, the
whole rainy season, with November 2016 missing (masked). Belgium 2021 (monthly and dekadal, Aug 2020 -
Nov 2021; legacy wide files read by :func:`read_wide_legacy`) keeps Nov 2020 - Oct 2021, the demo patch's
season. Several observations in a month are averaged (the files carry no cloud mask: a cloudy dekad
raises its month's mean).
Bands B02-B08, B11, B12 (B8A is empty in these files); DN 0 and 65535 are missing; reflectance = DN / 1e4.
Codes (``ewoc_code``) are mapped with ``class_mappings.json`` to :data:`cropcore.legend.CROP_LEGEND`. Each sample's
``lat``/``lon`` (degrees) become :attr:`PointSeries.latlon <cropcore.data.points.PointSeries.latlon>`.
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
LEGACY_MAP = "worldcereal/belgium_2021/wc2eurocrops_map.csv"


def load_class_mappings(near: str | Path | None = None) -> dict[str, dict[str, str]]:
    """``class_mappings.json`` next to ``near`` if present, else from the sample-data directory."""
    if near is not None and (Path(near).parent / "class_mappings.json").is_file():
        path = Path(near).parent / "class_mappings.json"
    else:
        path = data_dir("worldcereal/class_mappings.json") / "worldcereal" / "class_mappings.json"
    return json.loads(path.read_text())


#: Legacy codes that ``class_mappings.json`` lacks, with the land cover they stand for: ``13-00-00-000-0`` is what
#: ``wc2eurocrops_map.csv`` gives legacy "Grassland" (13) and "Permanent grass crops" (9120); the current hierarchy
#: files grassland under 20-..., so the mappings have no 13 branch. Grassland is non-crop land cover (class 0).
LEGACY_LANDCOVER = {"1300000000": "grasslands"}


def ewoc_to_legend(codes: pd.Series, mappings: dict[str, dict[str, str]]) -> np.ndarray:
    """Map ``ewoc_code`` values to CROP_LEGEND indices; -1 for codes the legend ignores."""
    landcover, croptype = {**LEGACY_LANDCOVER, **mappings["LANDCOVER10"]}, mappings["CROPTYPE24"]

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


def load_legacy_map(path: str | Path | None = None) -> dict[int, int]:
    """Legacy WorldCereal code (``croptype`` column of ``wc2eurocrops_map.csv``) -> ``ewoc_code`` (int).

    The table holds the legacy crop-type codes (1000-9998) and the legacy land-cover codes (10-99) in one
    column; ``ewoc_code`` is written ``11-01-06-000-0`` there and read as 1101060000.
    """
    if path is None:
        path = data_dir(LEGACY_MAP) / LEGACY_MAP
    table = pd.read_csv(path, dtype={"ewoc_code": str})
    codes = table["ewoc_code"].str.replace("-", "", regex=False).astype(np.int64)
    return dict(zip(table["croptype"].astype(int), codes, strict=True))


def legacy_to_ewoc(croptype: pd.Series, landcover: pd.Series, table: dict[int, int]) -> np.ndarray:
    """``ewoc_code`` of legacy labels: ``CROPTYPE_LABEL`` when set (not 0), else ``LANDCOVER_LABEL``.

    A code missing from the table gives 0 (unknown), which the legend ignores. For the Belgian 2021 files
    (:mod:`cropcore.data.belgium`), then through ``class_mappings.json`` as for the other files:
    - crops: 1110 winter wheat, 1510 winter barley, 1610 winter rye -> winter cereals; 1200 maize -> maize;
      5100 potatoes -> other crops;
    - non-crop (class 0): land cover 30 shrubland, 40 forest, 70 water; permanent crops 3300 grapes,
      3510 apples, 3530 cherries, 3900 other fruit;
    - dropped (-1), because class_mappings.json ignores the code or the legend has no class for it:
      9120 permanent grass / land cover 13 (-> 1300000000, a legacy grassland code absent from
      class_mappings.json), 99 no cropland (-> 1600000000, "ignore"), 10 cropland and 7900 other
      leguminous, 9900 other crops (-> 1000000000, crop type unknown), 1910 winter cereal (-> 1101000001),
      2900 other vegetables (-> 1103000000), 3450 strawberries, 9500 flower crops, 9520 permanent flowers,
      8100 sugar beet (-> 1107000031, CROPTYPE24 "beet", not in the legend's table).
    """
    code = np.where(croptype.to_numpy(int) != 0, croptype.to_numpy(int), landcover.to_numpy(int))
    return np.array([table.get(int(c), 0) for c in code], dtype=np.int64)


def _step_dates(table: pd.DataFrame, ts: int, dekadal: bool) -> pd.Series:
    """Date of time step ``ts``; step ``valid_position`` is ``valid_date`` (one month or one dekad apart)."""
    valid = pd.to_datetime(table["valid_date"])
    shift = ts - table["valid_position"].astype(int)
    if dekadal:
        index = valid.dt.year * 36 + (valid.dt.month - 1) * 3 + np.minimum((valid.dt.day - 1) // 10, 2) + shift
        year, month, day = index // 36, (index % 36) // 3 + 1, (index % 3) * 10 + 1
    else:
        index = valid.dt.year * 12 + valid.dt.month - 1 + shift
        year, month, day = index // 12, index % 12 + 1, 1
    return pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": day}))


def read_wide_legacy(table: pd.DataFrame, legacy_map: dict[int, int] | None = None
                     ) -> tuple[np.ndarray, pd.DataFrame]:
    """Legacy wide format (monthly or dekadal ``OPTICAL-Bxx-tsK-..m`` columns, ``CROPTYPE_LABEL``,
    ``LANDCOVER_LABEL``) -> (N, 12, 9) and per-sample rows with an ``ewoc_code`` column added.

    The step of ``tsK`` is counted from ``valid_date`` at ``valid_position`` (in the Belgian dekadal file
    ts0 is 21 Jul 2020, one dekad before ``start_date``, and ts48 is ``end_date``); monthly when
    ``available_timesteps`` equals the months from ``start_date`` to ``end_date``, dekadal when three
    times that. Steps on the season axis are averaged per month, as in :func:`read_long`.
    """
    need = {"valid_date", "valid_position", "available_timesteps", "start_date", "end_date"}
    if not need <= set(table.columns):
        raise DatasetFormatError(f"legacy wide table lacks {sorted(need - set(table.columns))}")
    start, end = pd.to_datetime(table["start_date"]), pd.to_datetime(table["end_date"])
    months = (end.dt.year - start.dt.year) * 12 + end.dt.month - start.dt.month + 1
    steps = table["available_timesteps"].astype(int)
    if (steps == months).all():
        dekadal = False
    elif (steps == 3 * months).all():
        dekadal = True
    else:
        raise DatasetFormatError("legacy wide table: available_timesteps is neither monthly nor dekadal")
    found = {(m.group(1), int(m.group(2))): c for c in table.columns if (m := _WIDE.match(c))}
    total = np.zeros((len(table), 12, len(BANDS)), np.float64)
    count = np.zeros_like(total)
    rows = np.arange(len(table))
    year = _year(table)
    for ts in sorted({ts for _, ts in found}):
        step = season_index(_step_dates(table, ts, dekadal), year)
        ok = step >= 0
        for j, band in enumerate(BANDS):
            if (band, ts) in found:
                v = _scale(table[found[band, ts]].to_numpy())[ok]
                good = np.isfinite(v)
                np.add.at(total, (rows[ok][good], step[ok][good], j), v[good])
                np.add.at(count, (rows[ok][good], step[ok][good], j), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(count > 0, total / count, np.nan).astype(np.float32)
    samples = table.reset_index(drop=True)
    ewoc = legacy_to_ewoc(samples["CROPTYPE_LABEL"], samples["LANDCOVER_LABEL"], legacy_map or load_legacy_map())
    return x, samples.assign(ewoc_code=ewoc)


def _year(table: pd.DataFrame) -> pd.Series:
    if "year" in table:
        return table["year"].astype(int)
    return pd.to_datetime(table["valid_time"]).dt.year


def read_worldcereal(path: str | Path) -> PointSeries:
    """Read a WorldCereal extraction file (long, wide or legacy wide; parquet or geoparquet) onto the season
    axis. Legacy wide files (``CROPTYPE_LABEL`` / ``LANDCOVER_LABEL``, no ``ewoc_code``) are read by
    :func:`read_wide_legacy`."""
    return read_worldcereal_table(path)[0]


def read_worldcereal_table(path: str | Path) -> tuple[PointSeries, pd.DataFrame]:
    """:func:`read_worldcereal` plus its per-sample rows (``sample_id``, ``lon``/``lat`` where present ...)."""
    path = Path(path)
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"{path} is not a readable parquet file: {exc}") from None
    if "ewoc_code" not in table and "CROPTYPE_LABEL" in table and "LANDCOVER_LABEL" in table:
        table = table.reset_index() if "sample_id" not in table else table
        if "sample_id" not in table:
            raise DatasetFormatError(f"{path} lacks a sample_id column or index")
        local = path.parent / "wc2eurocrops_map.csv"
        x, samples = read_wide_legacy(table, load_legacy_map(local) if local.is_file() else None)
        y = ewoc_to_legend(samples["ewoc_code"], load_class_mappings(path))
        return _series(x, y, samples), samples
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
    return _series(x, y, samples), samples


def _series(x: np.ndarray, y: np.ndarray, samples: pd.DataFrame) -> PointSeries:
    latlon = None
    if {"lat", "lon"} <= set(samples.columns):
        latlon = np.stack([pd.to_numeric(samples["lat"]), pd.to_numeric(samples["lon"])], axis=1).astype(np.float64)
    return PointSeries(
        x=x,
        y=y,
        sample_id=samples["sample_id"].astype(str).to_numpy(),
        bands=BANDS,
        time_axis=TIME_AXIS,
        class_names=tuple(c.name for c in CROP_LEGEND),
        latlon=latlon,
    )
