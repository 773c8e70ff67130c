"""Lazy Sentinel-2 datacubes from STAC items with odc-stac and dask.

:func:`load_cube` returns a :class:`LoadResult`: a dask-backed ``(time, band, y, x)`` cube of raw digital
numbers on one grid, and the list of assets that could not be read. Nothing is read until the cube is
computed; a missing or corrupt asset never stops the load, its pixels stay nodata and it is listed in
:attr:`LoadResult.failures` (checked up front by opening every asset's header, and recorded again by the
reader if pixel reads fail while the cube is computed).

Output CRS: ``crs="utm"`` picks the UTM zone of the AOI centroid (plain 6° zones, north/south by the
centroid's latitude). An AOI spanning two zones is loaded entirely in the centroid's zone: the part in the
neighbouring zone is reprojected, which keeps one regular grid at the cost of a small scale distortion
(< 0.1 % within 3° of the zone edge). Pass an explicit ``crs`` (e.g. ``"EPSG:32633"``) to choose another.

Bands are canonical (``B04``, ``SCL``) whatever the catalog calls them: each item's assets are resolved with
:mod:`cropcore.stac.bands`, and each item's own radiometry travels with the cube as ``scale``, ``offset``
and ``nodata`` coordinates per ``(time, band)``. Items are mosaicked per solar day (several MGRS tiles of
one day become one time step) unless their radiometry differs, and an acquisition processed twice (the same
tile and sensing time, e.g. reprocessed with a newer baseline) is loaded once: the newest processing
(:func:`latest_processing`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import dask.array as da
import numpy as np
import odc.stac
import pystac
import shapely
import xarray as xr
from dask._task_spec import DataNode, convert_legacy_graph  # private: no public way to substitute values
from dask.local import get_sync
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from cropcore.aoi import AOI, AOILike
from cropcore.cube.assets import AssetFailure, FailureLog, RecordingDriver, check_assets
from cropcore.errors import ConfigError, NoItemsFoundError
from cropcore.legend import S2_BANDS
from cropcore.progress import Progress
from cropcore.stac.bands import (
    CATEGORICAL_BANDS,
    Radiometry,
    asset_key,
    data_type,
    processing_baseline,
    radiometry,
    unresolved_error,
)
from cropcore.stac.catalog import asset_access

#: Default dask chunk: one time step, 1024 x 1024 pixels (2 MiB of uint16 per band).
DEFAULT_CHUNKS: dict[str, int] = {"time": 1, "x": 1024, "y": 1024}
#: Items of one MGRS tile sensed less than this apart are one acquisition (processed more than once).
SAME_ACQUISITION = timedelta(seconds=60)

@dataclass
class LoadResult:
    """A lazy cube and the assets that could not be read.

    ``cube``: digital numbers (uint16 for Sentinel-2), dims ``(time, band, y, x)`` with canonical band
    names, and coordinates ``scale``, ``offset`` (reflectance = DN * scale + offset) and ``nodata`` per
    ``(time, band)`` from each item's metadata (:func:`cropcore.stac.bands.radiometry`; NaN scale and offset
    where no item of that time step has the band). ``failures`` lists unreadable assets found so far: those
    whose header could not be opened at load time, plus any read that fails while the cube is computed in this
    process; an asset is named by its canonical band.
    """

    cube: xr.DataArray
    log: FailureLog = field(repr=False)

    @property
    def failures(self) -> list[AssetFailure]:
        return self.log.failures()


def utm_crs(geom: BaseGeometry) -> CRS:
    """UTM CRS (WGS84, EPSG:326zz/327zz) of the zone holding the centroid of a lon/lat geometry."""
    centroid = geom.centroid
    lon, lat = centroid.x, centroid.y
    zone = min(math.floor((lon + 180.0) / 6.0) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _nominal(item: pystac.Item) -> datetime | None:
    return item.datetime or item.common_metadata.start_datetime


_TILE = re.compile(r"^(?:MGRS-)?T?(\d{1,2})([C-X][A-Z]{2})$")


def _tile(item: pystac.Item) -> str | None:
    """The item's MGRS tile (``31UFS``) from ``grid:code``, ``s2:mgrs_tile`` or the ``mgrs:*`` fields."""
    props = item.properties
    parts = [props.get(k) for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square")]
    joined = "".join(str(p) for p in parts) if all(p is not None for p in parts) else None
    for code in (props.get("grid:code"), props.get("s2:mgrs_tile"), joined):
        match = _TILE.match(str(code or ""))
        if match:
            return f"{int(match.group(1)):02d}{match.group(2)}"
    return None


def _newness(item: pystac.Item) -> tuple[float, str, str]:
    generated = next((str(item.properties[k]) for k in ("s2:generation_time", "processing:datetime", "updated",
                                                        "created") if item.properties.get(k)), "")
    baseline = processing_baseline(item)
    return (-1.0 if baseline is None else baseline, generated, item.id)


def latest_processing(items: Sequence[pystac.Item]) -> list[pystac.Item]:
    """``items`` (in their order) without older processings of the same acquisition.

    Items of one MGRS tile sensed less than :data:`SAME_ACQUISITION` apart are one acquisition processed more
    than once (e.g. reprocessed with a newer baseline): only the one with the highest processing baseline is
    kept (then the latest generation time, then the last id). Items without a tile or date are all kept.
    """
    tiles, times = [_tile(i) for i in items], [_nominal(i) for i in items]
    dated = sorted((i for i in range(len(items)) if tiles[i] and times[i]), key=lambda i: (tiles[i], times[i]))
    groups: list[list[int]] = []
    for i in dated:
        last = groups[-1][-1] if groups else None
        if last is not None and tiles[last] == tiles[i] and times[i] - times[last] < SAME_ACQUISITION:
            groups[-1].append(i)
        else:
            groups.append([i])
    dropped = {i for group in groups for i in group if i != max(group, key=lambda j: _newness(items[j]))}
    return [item for i, item in enumerate(items) if i not in dropped]


def _item_hrefs(
    items: Sequence[pystac.Item], bands: Sequence[str], patch_url: Callable[[str], str] | None,
) -> dict[str, tuple[str, str]]:
    hrefs = {}
    for item in items:
        for band in bands:
            asset = item.assets.get(band)
            if asset is not None:
                href = asset.href if patch_url is None else patch_url(asset.href)
                hrefs[href] = (item.id, band)
    return hrefs


def _resolve_crs(crs: str | CRS | int, geom: BaseGeometry) -> CRS:
    if isinstance(crs, str) and crs.lower() == "utm":
        return utm_crs(geom)
    try:
        return CRS.from_user_input(crs)
    except CRSError:
        raise ConfigError(f"unknown CRS {crs!r}: give 'utm' or a CRS such as 'EPSG:32633'") from None


def default_resampling(band: str) -> str:
    """``nearest`` for classes (SCL) and for the 20 m and 60 m bands, ``bilinear`` for the 10 m bands.

    The shipped models learnt from WorldCereal composites, which keep each 20 m pixel as a block of 2 x 2
    pixels at 10 m; 20 m bands smoothed by bilinear resampling changed the class of 3.3 % of the demo map's
    pixels (96.7 % agreement instead of 99.96 % with nearest; tests/test_public_catalog_maps.py).
    """
    if band in CATEGORICAL_BANDS or (band in S2_BANDS and S2_BANDS[band].resolution > 10):
        return "nearest"
    return "bilinear"


def _resampling(bands: Sequence[str], resampling: str | Mapping[str, str] | None) -> dict[str, str]:
    if isinstance(resampling, str):
        return {b: "nearest" if b in CATEGORICAL_BANDS else resampling for b in bands}
    given = resampling or {}
    return {b: given.get(b, default_resampling(b)) for b in bands}


def _has_grid(item: pystac.Item, asset: pystac.Asset) -> bool:
    """Whether the asset's grid (shape, transform and CRS) is in its ``proj:*`` fields or its item's."""
    fields = item.properties | asset.extra_fields
    return (all(fields.get(k) is not None for k in ("proj:shape", "proj:transform"))
            and any(fields.get(k) is not None for k in ("proj:code", "proj:epsg", "proj:wkt2", "proj:projjson")))


def _canonical(item: pystac.Item, keys: Mapping[str, str], looks: Mapping[str, Radiometry]) -> pystac.Item:
    """A copy of ``item`` holding only the assets ``keys`` names, under their canonical band names.

    Each keeps its href, media type, roles and ``proj:*`` fields; its ``raster:bands`` gives odc-stac the pixel
    type and no-data value only (scale and offset travel as cube coordinates). When an asset's grid is not fully
    described, the copy drops the projection extension: odc-stac then reads every asset's own georeferencing.
    """
    copy = item.clone()
    copy.assets = {}
    with_grid = all(_has_grid(item, item.assets[key]) for key in keys.values())
    for band, key in keys.items():
        asset, nodata = item.assets[key], looks[band].nodata
        fields: dict[str, Any] = {k: v for k, v in asset.extra_fields.items() if k.startswith("proj:") and with_grid}
        fields["raster:bands"] = [{"data_type": data_type(item, band)} | ({} if nodata is None else {"nodata": nodata})]
        copy.add_asset(band, pystac.Asset(asset.href, media_type=asset.media_type, roles=asset.roles,
                                          extra_fields=fields))
    if not with_grid:
        copy.stac_extensions = [e for e in copy.stac_extensions if "/projection/" not in e]
        copy.properties = {k: v for k, v in copy.properties.items() if not k.startswith("proj:")}
    return copy


def _solar_day(item: pystac.Item, lon: float) -> date:
    """The item's date in solar time at longitude ``lon`` (in whole hours, as odc-stac's ``solar_day``)."""
    when = _nominal(item)
    if when is None:
        raise ConfigError(f"item {item.id} has no datetime: it cannot be placed on the time axis")
    return (when + timedelta(hours=int(lon / 15))).date()


def _coords(steps: Sequence[Sequence[Radiometry | None]], fill: Sequence[float | None]) -> dict[str, Any]:
    """``scale``, ``offset`` and ``nodata`` per ``(time, band)`` from each time step's radiometry per band.

    A band no item of a step has (None) gets NaN scale and offset; a band without a no-data value in its
    metadata gets the cube's fill value ``fill`` (NaN if none).
    """
    scale = [[np.nan if r is None else r.scale for r in step] for step in steps]
    offset = [[np.nan if r is None else r.offset for r in step] for step in steps]
    nodata = [[r.nodata if r is not None and r.nodata is not None else np.nan if f is None else f
               for r, f in zip(step, fill, strict=True)] for step in steps]
    shape = (len(steps), len(fill))
    return {name: (("time", "band"), np.asarray(table, dtype="float64").reshape(shape))
            for name, table in (("scale", scale), ("offset", offset), ("nodata", nodata))}


def _inline_setup(arr: da.Array) -> da.Array:
    """Copy odc-stac's small shared setup tasks (reader config, grid, opened readers) into each chunk task.

    Every chunk of a time step depends on one shared "open" task; dask's task ordering then loads whole
    time slices before compositing any chunk, so memory grows with the AOI. Evaluating these tiny tasks
    once (no pixel is read) and inlining their values leaves independent chunk tasks, and peak memory
    bounded by the chunk size.
    """
    dsk = convert_legacy_graph(dict(arr.__dask_graph__()))
    setup = [k for k in dsk if (k[0] if isinstance(k, tuple) else k) != arr.name]
    if not setup:
        return arr
    subs = {k: DataNode(None, v) for k, v in zip(setup, get_sync(dsk, setup), strict=True)}
    graph = {k: task.substitute(subs) for k, task in dsk.items() if k not in subs}
    return da.Array(graph, arr.name, arr.chunks, meta=arr._meta)


def load_cube(
    items: Iterable[pystac.Item],
    bands: Sequence[str],
    *,
    aoi: AOILike | None = None,
    crs: str | CRS | int = "utm",
    resolution: float = 10,
    chunks: Mapping[str, int] | None = None,
    resampling: str | Mapping[str, str] | None = None,
    check: bool = True,
    patch_url: Callable[[str], str] | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Load canonical ``bands`` of ``items`` as a lazy ``(time, band, y, x)`` cube clipped to the AOI's bounds.

    ``bands``: canonical names (``B04``, ``SCL``), resolved per item (:func:`cropcore.stac.bands.asset_key`);
    a band no item has is a :class:`ConfigError`, an item lacking a band others have is listed in the
    failures. ``aoi``: an :class:`~cropcore.aoi.AOI` or anything :meth:`~cropcore.aoi.AOI.parse` accepts
    (default: the union of the items' footprints). ``crs``: ``"utm"`` (zone of the AOI centroid, see the module
    docstring) or any CRS. ``chunks``: dask chunk sizes (default :data:`DEFAULT_CHUNKS`). ``resampling``: one
    method for every band or a per-band mapping (default: :func:`default_resampling`); categorical bands (SCL)
    are always ``nearest``. ``check``:
    open every asset header first so unreadable assets are listed before anything is computed. ``patch_url``
    signs or rewrites hrefs (e.g. ``planetary_computer.sign``). ``progress(fraction, message)`` follows the
    header check.
    """
    items = latest_processing(list(items))
    if not items:
        raise NoItemsFoundError("no items to load: search a wider area or date range first")
    bands = list(dict.fromkeys(bands))
    if not bands:
        raise ConfigError("no bands to load: name at least one, e.g. ['B04', 'B08']")
    keys = [{b: key for b in bands if (key := asset_key(item, b)) is not None} for item in items]
    unknown = [b for b in bands if not any(b in k for k in keys)]
    if unknown:
        raise unresolved_error(items[0], unknown)
    if aoi is None:
        geom = shapely.union_all([shape(item.geometry) for item in items if item.geometry])
        geopolygon = None
    else:
        geom = AOI.parse(aoi).geometry
        geopolygon = geom
    out_crs = _resolve_crs(crs, geom)
    if resolution <= 0:
        raise ConfigError(f"resolution must be positive (metres), got {resolution}")
    chunk_spec = dict(DEFAULT_CHUNKS if chunks is None else chunks)

    access = asset_access(items)  # S3 keys for Copernicus Data Space; a clear error when they are missing
    if access:
        odc.stac.configure_rio(cloud_defaults=True, **access)
    looks = [{b: radiometry(item, b) for b in k} for item, k in zip(items, keys, strict=True)]
    canonical = [_canonical(item, k, look) for item, k, look in zip(items, keys, looks, strict=True)]
    hrefs = _item_hrefs(canonical, bands, patch_url)
    log = FailureLog(hrefs)
    for item, k in zip(items, keys, strict=True):  # a band some other item has: it stays nodata here
        for band in bands:
            if band not in k:
                log.add(item.id, band, f"the item has no {band} asset")
    if check:
        check_assets(hrefs, log, progress=progress, gdal_options=access)
    # one time step per solar day and radiometry: items are only mosaicked when their DNs mean the same
    per_band = [tuple(look.get(b) for b in bands) for look in looks]
    steps = [(_solar_day(item, geom.centroid.x), repr(look)) for item, look in zip(items, per_band, strict=True)]
    ds = odc.stac.load(
        canonical, bands, geopolygon=geopolygon, crs=out_crs, resolution=resolution, chunks=chunk_spec,
        groupby=lambda _item, _parsed, idx: steps[idx], resampling=_resampling(bands, resampling),
        fail_on_error=False, patch_url=patch_url, driver=RecordingDriver(log),
    )
    for band in bands:
        ds[band] = ds[band].copy(data=_inline_setup(ds[band].data))
    look_of = dict(zip(steps, per_band, strict=True))
    fill = [ds[b].attrs.get("nodata") for b in bands]
    cube = (ds[bands].to_dataarray("band").transpose("time", "band", "y", "x")
            .assign_coords(_coords([look_of[step] for step in sorted(look_of)], fill)))
    cube.name = "dn"
    cube.attrs = {"units": "DN"}
    return LoadResult(cube, log)
