"""Each labelled pixel's monthly series, through the same search -> load -> preprocess path as a crop map.

:func:`extract_pixels` loads the model's season over the labels' bounding box with
:func:`~cropcore.pipeline.load_season` and takes the pixel under each point and the pixels whose centre lies
inside each polygon (pixels inside two polygons are left out), at most ``max_pixels`` per polygon. Every pixel
keeps its feature's number as ``sample_id``, so data are split by polygon, never by pixel. Labels outside the
scenes, polygons smaller than a pixel and pixels never observed are reported and left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import rasterio.features
import rasterio.transform
import rioxarray  # noqa: F401  (the .rio accessor)
import shapely
import xarray as xr
from pyproj import Transformer
from rasterio.enums import MergeAlg
from shapely.geometry import shape

from cropcore.aoi import AOI
from cropcore.cube.dask_setup import compute
from cropcore.data.points import PointSeries
from cropcore.errors import ConfigError, InvalidAOIError, NoItemsFoundError
from cropcore.labels.read import CLASS_ID, PARCEL, Labels, check_class_counts, count, listed
from cropcore.models import ModelMeta
from cropcore.pipeline import RunParams, Season, load_season
from cropcore.progress import Progress, silent, span

#: Most pixels taken from one polygon (a random, seeded sample), so large parcels do not swamp small ones.
MAX_PIXELS = 100
#: Margin (m) around the labels' bounding box, so a lone point still has an area to load.
MARGIN_M = 30.0


@dataclass(frozen=True)
class LabelledPixels:
    """The labelled pixels' series (``sample_id`` = the feature's number, ``latlon`` = the pixel centre) and
    the season they were loaded for."""

    series: PointSeries
    axis: pd.DatetimeIndex
    scenes: int
    catalog_url: str
    warnings: tuple[str, ...] = ()

    def parcels(self) -> dict[str, int]:
        """Labels (points or polygons) per class that kept at least one pixel."""
        first = pd.DataFrame({"parcel": self.series.sample_id, "y": self.series.y}).drop_duplicates("parcel")
        counts = np.bincount(first["y"], minlength=len(self.series.class_names))
        return dict(zip(self.series.class_names, counts.tolist(), strict=True))


def season_dates(meta: ModelMeta, year: int) -> tuple[date, date]:
    """First and last day of ``meta``'s monthly season ending in ``year`` (Nov 2020 – Oct 2021 for 2021)."""
    steps = meta.time_axis.steps
    if meta.time_axis.kind != "season_months" or not steps:
        raise ConfigError(f"model {meta.name!r} has no monthly season axis; label series cannot be made for it")
    last = pd.Timestamp(year=year, month=int(steps[-1][1:]), day=1)
    first = last - pd.DateOffset(months=len(steps) - 1)
    return first.date(), (last + pd.offsets.MonthEnd(1)).date()


def _where(bounds: Sequence[float]) -> str:
    west, south, east, north = bounds
    return f"lon {west:.4f} to {east:.4f}, lat {south:.4f} to {north:.4f}"


def labels_aoi(labels: Labels) -> AOI:
    """The labels' bounding box, with a :data:`MARGIN_M` margin, as an AOI."""
    frame = labels.frame
    padded = frame.to_crs(frame.estimate_utm_crs()).buffer(MARGIN_M).to_crs(4326)
    try:
        return AOI.parse(tuple(padded.total_bounds))
    except InvalidAOIError as exc:
        raise InvalidAOIError(f"{labels.source}: the labels' bounding box ({_where(frame.total_bounds)}) cannot be "
                              f"loaded as one area: {exc}. Split the file by region and train on one part") from None


def _search(labels: Labels, meta: ModelMeta, year: int, params: dict, progress: Progress) -> Season:
    start, end = season_dates(meta, year)
    run = RunParams(labels_aoi(labels), start, end, model=meta.name, **params)
    try:
        return load_season(run, meta, progress=progress)
    except NoItemsFoundError as exc:
        raise NoItemsFoundError(
            f"{labels.source}: none of the {count(len(labels.frame), 'label')} lies in a Sentinel-2 scene of catalog "
            f"{run.catalog!r} for the season {start:%b %Y} – {end:%b %Y} (the labels span "
            f"{_where(labels.frame.total_bounds)}): {exc}. Check the season, the catalog and that the labels are "
            "where you expect") from None


def _inside_scenes(labels: Labels, season: Season, warnings: list[str]) -> pd.Series:
    footprint = shapely.union_all([shape(item.geometry) for item in season.found.items])
    frame = labels.frame
    inside = frame.intersects(footprint)
    if not inside.all():
        outside = frame[~inside]
        where = (f"the {len(season.found.items)} Sentinel-2 scenes found for {season.axis[0]:%b %Y} – "
                 f"{season.axis[-1]:%b %Y}: the labels span {_where(outside.total_bounds)}, the scenes "
                 f"{_where(footprint.bounds)}")
        if not inside.any():
            raise NoItemsFoundError(f"{labels.source}: none of the {count(len(frame), 'label')} lies inside {where}. "
                                    "Check the labels' coordinates and CRS, the season and the catalog")
        warnings.append(f"left out {count(len(outside), 'label')} of {len(frame)} ({listed(outside[PARCEL])}) "
                        f"outside {where}")
    return inside


def _pixels(frame: pd.DataFrame, grid: xr.DataArray) -> pd.DataFrame:
    """``(row, col, label)`` of every labelled pixel of ``grid``: points' pixels and polygons' inner pixels."""
    local = frame.to_crs(grid.rio.crs)
    transform, size = grid.rio.transform(), (grid.sizes["y"], grid.sizes["x"])
    polygon = local.geom_type.str.endswith("Polygon")
    parts = [pd.DataFrame({"row": [], "col": [], "label": []}, dtype=np.int64)]
    if polygon.any():
        geoms = local.geometry[polygon]
        owner = rasterio.features.rasterize(zip(geoms, geoms.index + 1, strict=True), out_shape=size,
                                            transform=transform, fill=0, dtype="int32")
        cover = rasterio.features.rasterize(((g, 1) for g in geoms), out_shape=size, transform=transform,
                                            fill=0, dtype="int32", merge_alg=MergeAlg.add)
        rows, cols = np.nonzero((owner > 0) & (cover == 1))
        parts.append(pd.DataFrame({"row": rows, "col": cols, "label": owner[rows, cols] - 1}))
    points = local.geometry[~polygon].explode()
    if len(points):
        rows, cols = rasterio.transform.rowcol(transform, points.x.to_numpy(), points.y.to_numpy())
        found = pd.DataFrame({"row": np.asarray(rows), "col": np.asarray(cols), "label": points.index})
        parts.append(found[found.row.between(0, size[0] - 1) & found.col.between(0, size[1] - 1)])
    return pd.concat(parts, ignore_index=True)


def _latlon(grid: xr.DataArray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    xs, ys = rasterio.transform.xy(grid.rio.transform(), rows, cols)
    lon, lat = Transformer.from_crs(grid.rio.crs, 4326, always_xy=True).transform(xs, ys)
    return np.stack([np.asarray(lat), np.asarray(lon)], axis=1).astype(np.float32)


def _values(grid: xr.DataArray, rows: np.ndarray, cols: np.ndarray, progress: Progress) -> np.ndarray:
    """(N, T, C) reflectance of the pixels (only the chunks they fall in are computed)."""
    picked = grid.isel(y=xr.DataArray(rows, dims="pixel"), x=xr.DataArray(cols, dims="pixel"))
    data = picked.transpose("pixel", "time", "band").data
    if not isinstance(data, np.ndarray):
        (data,) = compute(data, progress=progress)
    return np.asarray(data, dtype=np.float32)


def extract_pixels(
    labels: Labels, meta: ModelMeta, year: int, *, catalog: str = "local", collections: list[str] | None = None,
    max_cloud: float | None = 80.0, max_pixels: int = MAX_PIXELS, seed: int = 0, progress: Progress | None = None,
) -> LabelledPixels:
    """The labelled pixels' series on ``meta``'s bands and season ending in ``year`` (see the module docstring).

    Raises :class:`~cropcore.errors.NoItemsFoundError` when no label lies in a scene and
    :class:`~cropcore.errors.DatasetFormatError` when a class keeps too few labels; what was left out, and
    why, is in ``warnings``.
    """
    report = progress or silent
    warnings = list(labels.warnings)
    season = _search(labels, meta, year, {"catalog": catalog, "collections": collections, "max_cloud": max_cloud},
                     span(report, 0.0, 0.8, "loading scenes: "))
    warnings += [f"unreadable, left out: {f.item_id}/{f.asset}: {f.reason}" for f in season.failures]
    inside = _inside_scenes(labels, season, warnings)
    frame = labels.frame[inside]
    grid = season.reflectance
    pixels = _pixels(frame, grid).sample(frac=1.0, random_state=seed).groupby("label").head(max_pixels)
    pixels = pixels.sort_values(["label", "row", "col"])
    small = frame.index.difference(pixels["label"].unique())
    if len(small):
        warnings.append(f"left out {count(len(small), 'polygon')} covering no pixel centre of the 10 m grid, or only "
                        f"pixels shared with other polygons ({listed(frame.loc[small, PARCEL])})")
    rows, cols = pixels["row"].to_numpy(), pixels["col"].to_numpy()
    x = _values(grid, rows, cols, span(report, 0.8, 1.0, "reading labelled pixels: "))
    observed = np.isfinite(x).all(axis=2).any(axis=1)
    label = pixels["label"].to_numpy()
    blind = np.setdiff1d(np.unique(label[~observed]), label[observed])
    if len(blind):
        warnings.append(f"left out {count(len(blind), 'label')} without a valid observation in the season (no scene "
                        f"data there, or clouds every month) ({listed(frame.loc[blind, PARCEL])})")
    label, rows, cols, x = label[observed], rows[observed], cols[observed], x[observed]
    series = PointSeries(x, frame.loc[label, CLASS_ID].to_numpy(np.int64), frame.loc[label, PARCEL].to_numpy(),
                         tuple(meta.bands), tuple(meta.time_axis.steps), labels.class_names, _latlon(grid, rows, cols))
    pixels_out = LabelledPixels(series, season.axis, len(season.found.items), season.found.url, tuple(warnings))
    check_class_counts(pixels_out.parcels(), labels.source, after=" with imagery")
    report(1.0, f"{len(series)} labelled pixels from {len(np.unique(series.sample_id))} labels")
    return pixels_out
