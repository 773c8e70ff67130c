"""The Belgian 2021 WorldCereal extractions (Flanders LPIS, ``worldcereal/belgium_2021/`` in the sample data).

Three files, read with :func:`cropcore.data.worldcereal.read_worldcereal` onto the Nov 2020 - Oct 2021
season axis (the files span Aug 2020 - Nov 2021; Aug-Oct 2020 and Nov 2021 are left out):
- ``2021_BEL_LPIS-Flanders_POLY_110_monthly.parquet``: long format with ``ewoc_code``, 100 points x 16
  months (from the WorldCereal repository's test resources, named ``worldcereal_private_extractions_dummy``
  there; the values look like real extractions);
- ``2021_BE_LPIS-Flanders_wide_monthly_legacy.parquet`` (50 points x 16 months) and
  ``2021_BE_LPIS-Flanders_wide_dekad_legacy.parquet`` (50 points x 48 dekads, averaged per month): wide format
  with legacy labels, mapped to ``ewoc_code`` with ``wc2eurocrops_map.csv`` (see
  :func:`cropcore.data.worldcereal.legacy_to_ewoc` for which codes map to what and which are dropped).

The files share points: :func:`read_belgium_2021` keeps one per location.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cropcore.data.points import PointSeries, concat
from cropcore.data.worldcereal import read_worldcereal_table
from cropcore.settings import data_dir

log = logging.getLogger(__name__)

FOLDER = "worldcereal/belgium_2021"
# in order of preference when a location is in several files: the long file carries ewoc_code itself
FILES = (
    "2021_BEL_LPIS-Flanders_POLY_110_monthly.parquet",
    "2021_BE_LPIS-Flanders_wide_monthly_legacy.parquet",
    "2021_BE_LPIS-Flanders_wide_dekad_legacy.parquet",
)
EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class DedupReport:
    """Points read per file, points dropped as duplicates of an earlier-kept location, points kept."""

    read: dict[str, int]
    dropped: int
    kept: int
    label_conflicts: int  # dropped points whose legend class differs from the point kept in their place


def duplicate_of(lon: np.ndarray, lat: np.ndarray, tolerance_m: float = 1.0) -> np.ndarray:
    """For each point, the index of an earlier kept point within ``tolerance_m`` metres, else -1.

    Points are taken in order; a point is kept when no kept point lies within the tolerance (equirectangular
    distance, exact enough at metre scale).
    """
    lon_r, lat_r = np.radians(np.asarray(lon, float)), np.radians(np.asarray(lat, float))
    out = np.full(len(lon_r), -1, np.int64)
    kept: list[int] = []
    for i in range(len(lon_r)):
        if kept:
            k = np.array(kept)
            dx = (lon_r[k] - lon_r[i]) * np.cos((lat_r[k] + lat_r[i]) / 2)
            dy = lat_r[k] - lat_r[i]
            dist = EARTH_RADIUS_M * np.hypot(dx, dy)
            if dist.min() <= tolerance_m:
                out[i] = k[int(np.argmin(dist))]
                continue
        kept.append(i)
    return out


def read_belgium_2021(folder: str | Path | None = None, tolerance_m: float = 1.0
                      ) -> tuple[PointSeries, DedupReport]:
    """Read the three Belgian files and keep one point per location (within ``tolerance_m``), preferring
    the long-format file with ``ewoc_code``, then the monthly, then the dekadal legacy file."""
    folder = Path(folder) if folder is not None else data_dir(FOLDER) / FOLDER
    parts, lons, lats = [], [], []
    read: dict[str, int] = {}
    for name in FILES:
        series, samples = read_worldcereal_table(folder / name)
        parts.append(series)
        lons.append(pd.to_numeric(samples["lon"]).to_numpy(float))
        lats.append(pd.to_numeric(samples["lat"]).to_numpy(float))
        read[name] = len(series)
    allpoints = concat(parts)
    dup = duplicate_of(np.concatenate(lons), np.concatenate(lats), tolerance_m)
    dropped = dup >= 0
    conflicts = int((allpoints.y[dropped] != allpoints.y[dup[dropped]]).sum())
    report = DedupReport(read=read, dropped=int(dropped.sum()), kept=int((~dropped).sum()),
                         label_conflicts=conflicts)
    log.info("Belgium 2021: read %s, dropped %d duplicates by location (%d with another class), kept %d",
             read, report.dropped, conflicts, report.kept)
    return allpoints.subset(~dropped), report
