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
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import dask.array as da
import numpy as np
import odc.stac
import pystac
import rasterio
import rasterio.errors
import shapely
import xarray as xr
from dask._task_spec import DataNode, convert_legacy_graph  # private: no public way to substitute values
from dask.local import get_sync
from odc.geo.geobox import GeoBox
from odc.loader import RioDriver, RioReader
from odc.loader.types import RasterLoadParams, RasterSource, ReaderSubsetSelection
from odc.stac._mdtools import StacAuxReader  # private: odc-stac's own aux reader, not exported
from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio._err import CPLE_BaseError  # private: GDAL's errors, not re-exported by rasterio.errors
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from cropcore.aoi import AOI, AOILike
from cropcore.errors import ConfigError, NoItemsFoundError
from cropcore.legend import S2_BOA_OFFSET
from cropcore.progress import Progress

#: Default dask chunk: one time step, 1024 x 1024 pixels (2 MiB of uint16 per band).
DEFAULT_CHUNKS: dict[str, int] = {"time": 1, "x": 1024, "y": 1024}
#: Bands that are categorical and must never be interpolated.
CATEGORICAL_BANDS = ("SCL",)
#: Item property (added while loading) holding the BOA offset to subtract, loaded as a ``time`` coordinate.
BOA_OFFSET_PROPERTY = "cropcore:boa_offset"

_READ_ERRORS = (rasterio.errors.RasterioError, CPLE_BaseError, OSError)


@dataclass(frozen=True)
class AssetFailure:
    """One asset that could not be read."""

    item_id: str
    asset: str
    reason: str


class FailureLog:
    """Thread-safe record of unreadable assets, keyed by href.

    When a cube is computed by a distributed scheduler the reader runs in other processes; a pickled log
    starts empty there, so read-time failures on remote workers appear only in the worker logs (the
    up-front header check still lists missing and corrupt files).
    """

    def __init__(self, assets: Mapping[str, tuple[str, str]]) -> None:
        self._assets = dict(assets)  # href -> (item id, asset key)
        self._failures: dict[tuple[str, str], AssetFailure] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"_assets": self._assets}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_assets"])

    def record(self, href: str, reason: str) -> None:
        """Note that ``href`` could not be read (the first reason per asset is kept)."""
        item_id, asset = self._assets.get(href, ("?", href))
        self.add(item_id, asset, reason)

    def add(self, item_id: str, asset: str, reason: str) -> None:
        """Note that ``asset`` of item ``item_id`` is unusable (the first reason per asset is kept)."""
        with self._lock:
            self._failures.setdefault((item_id, asset), AssetFailure(item_id, asset, _one_line(reason)))

    def failures(self) -> list[AssetFailure]:
        """The failures recorded so far, sorted by item and asset."""
        with self._lock:
            return sorted(self._failures.values(), key=lambda f: (f.item_id, f.asset))


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text[:300] or "unknown error"


def _reason(exc: BaseException) -> str:
    """The messages of ``exc`` and its causes, deepest first (GDAL puts the detail in the cause)."""
    messages: list[str] = []
    chain: BaseException | None = exc
    while chain is not None and len(messages) < 5:
        text = str(chain).strip()
        if text and text not in messages and not text.startswith("Read failed. See previous"):
            messages.append(text)
        chain = chain.__cause__ or chain.__context__
    return "; ".join(reversed(messages)) or type(exc).__name__


class _RecordingReader(RioReader):
    """odc-stac's rasterio reader that records a failed read instead of raising."""

    def __init__(self, src: RasterSource, ctx: Any, log: FailureLog) -> None:
        super().__init__(src, ctx)
        self._log = log

    def read(
        self,
        cfg: RasterLoadParams,
        dst_geobox: GeoBox,
        *,
        dst: np.ndarray | None = None,
        selection: ReaderSubsetSelection | None = None,
    ) -> tuple[tuple[slice, slice], np.ndarray]:
        try:
            return super().read(replace(cfg, fail_on_error=True), dst_geobox, dst=dst, selection=selection)
        except _READ_ERRORS as exc:
            self._log.record(self._src.uri, _reason(exc))
        # same "nothing read" answer as odc-stac with fail_on_error=False: the chunk keeps its nodata fill
        out = dst[0:0, 0:0] if dst is not None else np.ndarray((0, 0), dtype=cfg.dtype)
        return np.s_[0:0, 0:0], out


class _RecordingDriver(RioDriver):
    """odc-stac's rasterio driver whose readers report into a :class:`FailureLog`."""

    def __init__(self, log: FailureLog) -> None:
        super().__init__(aux_reader=StacAuxReader())
        self.log = log

    def open(self, src: RasterSource, ctx: Any) -> _RecordingReader:
        return _RecordingReader(src, ctx, self.log)


@dataclass
class LoadResult:
    """A lazy cube and the assets that could not be read.

    ``cube``: uint16 digital numbers, dims ``(time, band, y, x)``, coordinate ``nodata`` per band and
    ``boa_offset`` per time step (see :func:`boa_offset`). ``failures`` lists unreadable assets found so
    far: those whose header could not be opened at load time, plus any read that fails while the cube is
    computed in this process.
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


def _parse_baseline(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def boa_offset(properties: Mapping[str, Any]) -> int:
    """BOA offset (DN) to subtract from an L2A scene with these STAC properties before scaling.

    Processing baseline 04.00 and later add :data:`S2_BOA_OFFSET` to every L2A digital number. Scenes
    without ``s2:processing_baseline`` (composites, L1C, older catalogs) and scenes a provider already
    harmonised (``earthsearch:boa_offset_applied``) get 0.
    """
    if properties.get("earthsearch:boa_offset_applied"):
        return 0
    baseline = _parse_baseline(properties.get("s2:processing_baseline"))
    if baseline is None or baseline < 4.0:
        return 0
    return S2_BOA_OFFSET


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


def _check_header(href: str) -> str | None:
    """Open ``href`` (header only); return the reason it cannot be opened, or None."""
    try:
        with rasterio.open(href) as src:
            if src.count < 1:
                return "the file holds no raster band"
    except _READ_ERRORS as exc:
        return _reason(exc)
    return None


def check_assets(
    hrefs: Mapping[str, tuple[str, str]], log: FailureLog, *, progress: Progress | None = None,
    max_workers: int = 8,
) -> None:
    """Open every asset's header (in threads, no pixels read) and record the ones that fail."""
    total = len(hrefs)
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        for done, (href, reason) in enumerate(zip(hrefs, pool.map(_check_header, hrefs), strict=True), 1):
            if reason is not None:
                log.record(href, reason)
            if progress is not None:
                progress(done / total, f"checked {done}/{total} assets")


def _resolve_crs(crs: str | CRS | int, geom: BaseGeometry) -> CRS:
    if isinstance(crs, str) and crs.lower() == "utm":
        return utm_crs(geom)
    try:
        return CRS.from_user_input(crs)
    except CRSError:
        raise ConfigError(f"unknown CRS {crs!r}: give 'utm' or a CRS such as 'EPSG:32633'") from None


def _resampling(bands: Sequence[str], resampling: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(resampling, str):
        return {b: "nearest" if b in CATEGORICAL_BANDS else resampling for b in bands}
    return {b: resampling.get(b, "nearest" if b in CATEGORICAL_BANDS else "bilinear") for b in bands}


def _with_offsets(items: Sequence[pystac.Item]) -> list[pystac.Item]:
    """Copies of ``items`` carrying their BOA offset as a numeric property odc-stac can load."""
    out = []
    for item in items:
        copy = item.clone()
        copy.properties[BOA_OFFSET_PROPERTY] = boa_offset(item.properties)
        out.append(copy)
    return out


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
    groupby: str = "solar_day",
    resampling: str | Mapping[str, str] = "bilinear",
    check: bool = True,
    patch_url: Callable[[str], str] | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Load ``bands`` of ``items`` as a lazy ``(time, band, y, x)`` cube clipped to the AOI's bounds.

    ``aoi``: an :class:`~cropcore.aoi.AOI` or anything :meth:`~cropcore.aoi.AOI.parse` accepts (default: the
    union of the items' footprints). ``crs``: ``"utm"`` (zone of the AOI centroid, see the module docstring) or any CRS.
    ``chunks``: dask chunk sizes (default :data:`DEFAULT_CHUNKS`). ``resampling``: one method for every
    band or a per-band mapping; categorical bands (SCL) default to ``nearest``. ``check``: open every
    asset header first so unreadable assets are listed before anything is computed. ``patch_url`` signs
    or rewrites hrefs (e.g. ``planetary_computer.sign``). ``progress(fraction, message)`` follows the
    header check.
    """
    items = list(items)
    if not items:
        raise NoItemsFoundError("no items to load: search a wider area or date range first")
    bands = list(dict.fromkeys(bands))
    available = sorted({key for item in items for key in item.assets})
    unknown = [b for b in bands if b not in available]
    if not bands or unknown:
        raise ConfigError(f"unknown bands {unknown or bands}: the items hold {', '.join(available)}")
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

    hrefs = _item_hrefs(items, bands, patch_url)
    log = FailureLog(hrefs)
    for item in items:  # an item lacking a band some other item has: that band stays nodata there
        for band in bands:
            if band not in item.assets:
                log.add(item.id, band, f"the item has no {band} asset")
    if check:
        check_assets(hrefs, log, progress=progress)
    ds = odc.stac.load(
        _with_offsets(items), bands, geopolygon=geopolygon, crs=out_crs, resolution=resolution,
        chunks=chunk_spec, groupby=groupby, resampling=_resampling(bands, resampling), fail_on_error=False,
        patch_url=patch_url, driver=_RecordingDriver(log), with_properties=[BOA_OFFSET_PROPERTY],
    )
    for band in bands:
        ds[band] = ds[band].copy(data=_inline_setup(ds[band].data))
    offsets = ds[BOA_OFFSET_PROPERTY.replace(":", "_")]
    nodata = [ds[b].attrs.get("nodata") for b in bands]
    cube = (
        ds[bands].to_dataarray("band").transpose("time", "band", "y", "x")
        .assign_coords(boa_offset=("time", np.asarray(offsets.values, dtype="int32")),
                       nodata=("band", np.asarray([np.nan if v is None else v for v in nodata], dtype="float64")))
    )
    cube.name = "dn"
    cube.attrs = {"units": "DN"}
    return LoadResult(cube, log)
