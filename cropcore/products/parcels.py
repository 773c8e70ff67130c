"""Per-parcel statistics of a crop map: one row per field of a user's parcel file.

The file (GeoJSON, GeoPackage, GeoParquet, Shapefile or a zipped Shapefile) is read in batches (Arrow record
batches from pyogrio or pyarrow), never whole: each batch is repaired (``shapely.make_valid``), reprojected to
the map's grid, rasterised on the window it covers (``rasterio.features.rasterize``, pixel centres) and reduced
with ``numpy.bincount``; its rows are appended to the outputs (GeoPackage and/or GeoParquet) before the next
batch is read. Memory grows with the map and the batch, not with the number of parcels. A first, cheaper pass
counts how many parcels cover each pixel, so overlaps are found across batches.

Each parcel gets a ``status``:

==============  =====================================================================================
``ok``          statistics from the map pixels whose centre lies inside the parcel
``tiny``        smaller than one pixel: the statistics of the pixel under it (reported, not dropped)
``no data``     inside the map's extent, but every pixel under it has no data (e.g. outside the AOI)
``outside``     does not touch the map's extent: no statistics
``invalid``     no usable polygon (empty, not a polygon, or invalid and not repairable): skipped
==============  =====================================================================================

and a ``note`` saying what else happened (repaired, overlaps, partly outside, no pixel centre inside).
Overlapping parcels are each counted on their own, with all the pixels under them (``overlaps`` = shares map
pixels with another parcel). Shares are of the parcel's mapped pixels (classified + uncertain, no-data
pixels left out): ``majority_share`` + ``uncertain_share`` <= 1; ``majority`` is the most frequent class
among the classified pixels.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import rasterio.features
import shapely
import xarray as xr
from affine import Affine
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS, Geod, Transformer
from rasterio.enums import MergeAlg
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from cropcore.errors import ConfigError, ExportError
from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.products.export import write_error

#: Input formats by file suffix.
FORMATS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GeoPackage", ".parquet": "GeoParquet",
           ".geoparquet": "GeoParquet", ".shp": "Shapefile", ".zip": "zipped Shapefile"}
#: Parcels per batch (read, rasterised and written together).
BATCH = 10_000
OK, TINY, NO_DATA, OUTSIDE, INVALID = "ok", "tiny", "no data", "outside", "invalid"
STATUSES = (OK, TINY, NO_DATA, OUTSIDE, INVALID)
#: Columns this module adds; input attributes with these names are kept as ``<name>_input``.
COLUMNS = ("parcel", "status", "note", "class_id", "class", "majority_share", "confidence", "uncertain_share",
           "area_ha", "pixels", "overlaps")
_RESERVED = {*COLUMNS, "geometry", "fid"}
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class MapLayers:
    """The map the parcels are summarised on: classes, confidence and NDVI on one grid."""

    classes: np.ndarray  # (y, x) uint8: class ids, UNCERTAIN, NODATA
    confidence: np.ndarray  # (y, x) float32, NaN = no data
    ndvi: xr.DataArray  # (time, y, x), numpy- or dask-backed: read one window at a time
    transform: Affine
    crs: CRS
    class_names: tuple[str, ...]

    @classmethod
    def from_prediction(cls, prediction: xr.Dataset, reflectance: xr.DataArray,
                        class_names: tuple[str, ...] | list[str]) -> MapLayers:
        """The layers of a prediction (``class``, ``confidence``) and its reflectance cube (bands B04, B08)."""
        from cropcore.cube.indices import spectral_index

        classes = prediction["class"]
        return cls(np.asarray(classes.values), np.asarray(prediction["confidence"].values, dtype="float32"),
                   spectral_index(reflectance, "NDVI").transpose("time", "y", "x"), classes.rio.transform(),
                   CRS.from_user_input(classes.rio.crs), tuple(class_names))

    @property
    def shape(self) -> tuple[int, int]:
        return self.classes.shape  # type: ignore[return-value]

    @property
    def months(self) -> list[str]:
        """The NDVI column names, one per time step: ``ndvi_2021_04``."""
        return [f"ndvi_{t:%Y_%m}" for t in pd.DatetimeIndex(self.ndvi["time"].values)]

    @property
    def pixel_area_m2(self) -> float:
        """Area of one pixel (projected grids; the grid's centre row on lon/lat grids)."""
        if self.crs.is_projected:
            return abs(self.transform.a * self.transform.e) * self.crs.axis_info[0].unit_conversion_factor ** 2
        lon, lat = self.transform * (0, self.shape[0] / 2)
        ring = shapely.box(lon, lat, lon + self.transform.a, lat + self.transform.e)
        return abs(Geod(ellps="WGS84").geometry_area_perimeter(ring)[0])

    def areas_ha(self, geoms: np.ndarray) -> np.ndarray:
        """Areas in hectares of geometries in the map's CRS."""
        if self.crs.is_projected:
            return shapely.area(geoms) * self.crs.axis_info[0].unit_conversion_factor ** 2 / 1e4
        geod = Geod(ellps="WGS84")
        return np.array([abs(geod.geometry_area_perimeter(g)[0]) / 1e4 for g in geoms])


@dataclass
class ParcelSummary:
    """What :func:`parcel_stats` did: parcels per status, overlaps, repairs, the files written."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    repaired: int = 0
    overlapping: int = 0
    partly_outside: int = 0
    seconds: float = 0.0
    paths: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for people, e.g. ``120 parcels: 112 mapped, 3 tiny ...``."""
        s = self.by_status
        parts = [f"{s[OK]:,} mapped"]
        parts += [f"{s[TINY]:,} tiny (< 1 pixel: the pixel under each)"] if s[TINY] else []
        parts += [f"{s[NO_DATA]:,} without map data"] if s[NO_DATA] else []
        parts += [f"{s[OUTSIDE]:,} outside the map (no statistics)"] if s[OUTSIDE] else []
        parts += [f"{s[INVALID]:,} invalid (skipped)"] if s[INVALID] else []
        extra = [f"{self.repaired:,} repaired"] if self.repaired else []
        extra += [f"{self.overlapping:,} overlap another parcel (each counted on its own)"] if self.overlapping else []
        extra += [f"{self.partly_outside:,} partly outside the map"] if self.partly_outside else []
        text = f"{self.total:,} parcels: {', '.join(parts)}"
        text += f"; {', '.join(extra)}" if extra else ""
        return text + "".join(f"; {n}" for n in self.notes)


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ParcelFile:
    """An opened parcel file: its format, CRS, number of features (None when unknown) and a note."""

    path: Path
    kind: str
    crs: CRS
    count: int | None
    note: str | None = None


def open_parcels(path: Path | str) -> ParcelFile:
    """Check a parcel file (format, readable, CRS) without reading its features; :class:`ConfigError` if not."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{path.name}: unsupported parcel file; give a GeoJSON, GeoPackage, GeoParquet or a zipped "
                          "Shapefile (.geojson, .gpkg, .parquet, .zip)")
    if not path.is_file():
        raise ConfigError(f"{path}: no such parcel file")
    if kind == "GeoParquet":
        try:
            schema = pq.read_schema(path)
            count = pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(f"{path.name} is not a readable Parquet file ({exc})") from None
        geo = json.loads((schema.metadata or {}).get(b"geo", b"null"))
        if not geo:
            raise ConfigError(f"{path.name} is Parquet without GeoParquet metadata (no geometry column)")
        crs = geo["columns"][geo["primary_column"]].get("crs", "OGC:CRS84")
        if count == 0:
            raise ConfigError(f"{path.name} holds no parcels")
        return ParcelFile(path, kind, CRS.from_user_input(crs or "OGC:CRS84"), count)
    try:
        layers = pyogrio.list_layers(path)
        info = pyogrio.read_info(path, layer=0)
    except (DataSourceError, DataLayerError) as exc:
        hint = " (the zip must hold one .shp with its .shx, .dbf and .prj)" if kind == "zipped Shapefile" else ""
        raise ConfigError(f"{path.name} is not a readable {kind}{hint}: {str(exc).splitlines()[0]}") from None
    if info["geometry_type"] is None:
        raise ConfigError(f"{path.name} has no geometry column")
    if info["crs"] is None:
        raise ConfigError(f"{path.name} has no coordinate reference system; add one (e.g. a .prj file, or "
                          "save it with its CRS in QGIS)")
    note = f"read layer {layers[0][0]!r} of {len(layers)}" if len(layers) > 1 else None
    count = info["features"] if info["features"] >= 0 else None
    if count == 0:
        raise ConfigError(f"{path.name} holds no parcels")
    return ParcelFile(path, kind, CRS.from_user_input(info["crs"]), count, note)


def read_batches(source: ParcelFile, size: int = BATCH) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """The file's attributes (Arrow) and geometries (shapely, None where unreadable), ``size`` rows at a time."""
    if source.kind == "GeoParquet":
        parquet = pq.ParquetFile(source.path)
        geo = json.loads(parquet.schema_arrow.metadata[b"geo"])
        column = geo["primary_column"]
        for batch in parquet.iter_batches(batch_size=size):
            yield _split(pa.Table.from_batches([batch]), column)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pyogrio: "more than one layer found"
        with pyogrio.open_arrow(source.path, layer=0, batch_size=size, use_pyarrow=True) as (meta, reader):
            column = meta["geometry_name"] or "wkb_geometry"
            for batch in reader:
                yield _split(pa.Table.from_batches([batch]), column)


def _split(table: pa.Table, column: str) -> tuple[pa.Table, np.ndarray]:
    wkb = table.column(column).to_pylist()
    geoms = shapely.from_wkb(np.array(wkb, dtype=object), on_invalid="ignore")
    return table.drop_columns([column]), geoms


# ---------------------------------------------------------------------------------------------- geometry


def _polygonal(geom: shapely.Geometry | None) -> shapely.MultiPolygon | None:
    """The polygon parts of ``geom`` as one MultiPolygon, or None when it has none."""
    if geom is None or geom.is_empty:
        return None
    parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and p.area > 0]
    return shapely.MultiPolygon(parts) if parts else None


def repair(geoms: np.ndarray) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """Polygons as MultiPolygons (None when unusable), why each is unusable or was repaired, and which were."""
    out = np.empty(len(geoms), dtype=object)
    reasons: list[str | None] = [None] * len(geoms)
    repaired = np.zeros(len(geoms), dtype=bool)
    geoms = shapely.force_2d(geoms)
    kinds = shapely.get_type_id(geoms)  # -1 missing, 3 Polygon, 6 MultiPolygon
    plain = np.isin(kinds, (3, 6)) & shapely.is_valid(geoms) & ~shapely.is_empty(geoms)
    plain &= shapely.area(np.where(plain, geoms, None)) > 0
    parts, index = shapely.get_parts(geoms[plain], return_index=True)
    out[np.flatnonzero(plain)] = shapely.multipolygons(parts, indices=index)
    for i in np.flatnonzero(~plain):
        geom = geoms[i]
        if geom is None or geom.is_empty:
            reasons[i] = "no geometry"
        elif geom.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
            reasons[i] = f"a {geom.geom_type}, not a polygon"
        elif not geom.is_valid:
            why = shapely.is_valid_reason(geom)
            out[i] = _polygonal(shapely.make_valid(geom))
            repaired[i] = out[i] is not None
            reasons[i] = f"repaired ({why})" if repaired[i] else f"invalid ({why}) and not repairable"
        else:
            out[i] = _polygonal(geom)
            reasons[i] = None if out[i] is not None else "no polygon with an area"
    return out, reasons, repaired


def _to_map(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    if src.equals(dst):
        return geoms
    project = Transformer.from_crs(src, dst, always_xy=True).transform
    return shapely.transform(geoms, lambda xy: np.column_stack(project(xy[:, 0], xy[:, 1])))


def _pixel_bounds(geoms: np.ndarray, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """(row0, col0, row1, col1) of each geometry's box on the grid, clipped to it."""
    x0, y0, x1, y1 = shapely.bounds(geoms).T
    inv = ~transform
    cols = np.stack([(inv * (x, y0))[0] for x in (x0, x1)])
    rows = np.stack([(inv * (x0, y))[1] for y in (y0, y1)])
    r0 = np.clip(np.floor(rows.min(0)), 0, shape[0]).astype(int)
    r1 = np.clip(np.ceil(rows.max(0)), 0, shape[0]).astype(int)
    c0 = np.clip(np.floor(cols.min(0)), 0, shape[1]).astype(int)
    c1 = np.clip(np.ceil(cols.max(0)), 0, shape[1]).astype(int)
    return np.stack([r0, c0, r1, c1], axis=1)


def _layers(geoms: np.ndarray) -> np.ndarray:
    """A layer number per geometry such that no two in one layer share interior (greedy colouring)."""
    layer = np.zeros(len(geoms), dtype=int)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pair = left < right
    left, right = left[pair], right[pair]
    overlap = shapely.relate_pattern(geoms[left], geoms[right], "2********")
    neighbours: dict[int, set[int]] = {}
    for a, b in zip(left[overlap], right[overlap], strict=True):
        neighbours.setdefault(int(b), set()).add(int(a))
    for b in sorted(neighbours):
        used = {layer[a] for a in neighbours[b]}
        layer[b] = next(k for k in range(len(used) + 1) if k not in used)
    return layer


@dataclass
class _Batch:
    """A batch's geometries on the map grid and what is known about each before reading pixels."""

    out: np.ndarray  # MultiPolygons in the file's CRS (None: invalid)
    on_map: np.ndarray  # the same on the map's CRS
    reasons: list[str | None]
    repaired: np.ndarray
    inside: np.ndarray  # touches the map's extent
    outside_share: np.ndarray
    area_ha: np.ndarray
    window: Window | None  # the part of the grid the batch covers

    def rasterisable(self) -> np.ndarray:
        return np.flatnonzero(self.inside)


def _prepare(geoms: np.ndarray, src: CRS, layers: MapLayers, *, details: bool = True) -> _Batch:
    """Repair and reproject a batch, find what touches the map and the window it covers; with ``details`` also
    the areas and the shares outside the map."""
    out, reasons, repaired = repair(geoms)
    valid = np.array([g is not None for g in out], dtype=bool)
    on_map = np.full(len(out), None, dtype=object)
    on_map[valid] = _to_map(out[valid], src, layers.crs)
    extent = _extent(layers)
    area = np.full(len(out), np.nan)
    outside_share = np.zeros(len(out))
    bounds = np.full((len(out), 4), np.nan)
    bounds[valid] = shapely.bounds(on_map[valid])
    x0, y0, x1, y1 = extent.bounds
    within = (bounds[:, 0] >= x0) & (bounds[:, 1] >= y0) & (bounds[:, 2] <= x1) & (bounds[:, 3] <= y1)
    border = valid & ~within
    border[border] = shapely.intersects(on_map[border], extent)
    inside = within | border
    if details:
        area[valid] = layers.areas_ha(on_map[valid])
        if border.any():
            kept = shapely.area(shapely.intersection(on_map[border], extent))
            outside_share[border] = 1 - kept / shapely.area(on_map[border])
    window = None
    if inside.any():
        box = _pixel_bounds(on_map[inside], layers.transform, layers.shape)
        r0, c0 = box[:, 0].min(), box[:, 1].min()
        r1, c1 = box[:, 2].max(), box[:, 3].max()
        window = Window(c0, r0, max(c1 - c0, 1), max(r1 - r0, 1)) if r1 > r0 and c1 > c0 else None
    return _Batch(out, on_map, reasons, repaired, inside, outside_share, area, window)


def _extent(layers: MapLayers) -> shapely.Polygon:
    height, width = layers.shape
    (x0, y0), (x1, y1) = layers.transform * (0, 0), layers.transform * (width, height)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _geojson(geoms: np.ndarray) -> list[dict]:
    """GeoJSON-like MultiPolygon dicts of polygonal geometries, built from shapely's vectorised accessors (about
    10x faster than ``__geo_interface__`` one by one)."""
    parts, part_of = shapely.get_parts(geoms, return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    coords, coord_of = shapely.get_coordinates(rings, return_index=True)
    ends = np.cumsum(np.bincount(coord_of, minlength=len(rings))).tolist()
    points = coords.tolist()
    polygons: list[list] = [[] for _ in range(len(parts))]
    for start, end, polygon in zip([0, *ends[:-1]], ends, ring_of.tolist(), strict=True):
        polygons[polygon].append(points[start:end])
    out: list[dict] = [{"type": "MultiPolygon", "coordinates": []} for _ in range(len(geoms))]
    for polygon, geom in zip(polygons, part_of.tolist(), strict=True):
        out[geom]["coordinates"].append(polygon)
    return out


def _rasterize(geoms: np.ndarray, values: np.ndarray, window: Window, transform: Affine, *, dtype: str,
               add: bool = False) -> np.ndarray:
    return rasterio.features.rasterize(
        zip(_geojson(geoms), values.tolist(), strict=True), out_shape=(int(window.height), int(window.width)),
        transform=window_transform(window, transform), fill=0, dtype=dtype,
        merge_alg=MergeAlg.add if add else MergeAlg.replace)


# ---------------------------------------------------------------------------------------------- statistics


def _group_median(groups: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` per group 0..n-1 (NaN values skipped; NaN for empty groups).

    One sort of ``group + scaled value`` (the values mapped into [0, 0.5)) orders the values inside each group.
    """
    ok = np.isfinite(values)
    groups, values = groups[ok], values[ok].astype(np.float64)
    median = np.full(n, np.nan)
    if not values.size:
        return median
    low, span = values.min(), np.ptp(values)
    ordered = values[np.argsort(groups + 0.5 * (values - low) / (span if span > 0 else 1.0) * (1 - 1e-9))]
    counts = np.bincount(groups, minlength=n)
    starts = np.cumsum(counts) - counts
    has = counts > 0
    lo, hi = starts[has] + (counts[has] - 1) // 2, starts[has] + counts[has] // 2
    median[has] = (ordered[lo] + ordered[hi]) / 2
    return median


def _pixels(batch: _Batch, layers: MapLayers, coverage: np.ndarray) -> tuple[np.ndarray, ...]:
    """The map pixels of each parcel of ``batch``: parcel index, row, column, covered more than once.

    Pixel centres inside the parcel, one rasterisation per overlap layer; a parcel without a pixel centre (tiny
    or thin) gets the pixel under its representative point.
    """
    idx = batch.rasterisable()
    window = batch.window
    empty = np.empty(0, dtype=np.int64)
    if window is None or not len(idx):
        return empty, empty, empty, np.empty(0, dtype=bool)
    labels, rows, cols = [], [], []
    layer = _layers(batch.on_map[idx])
    for k in np.unique(layer):
        members = idx[layer == k]
        burnt = _rasterize(batch.on_map[members], members + 1, window, layers.transform, dtype="int32")
        flat = np.flatnonzero(burnt)
        labels.append(burnt.ravel()[flat] - 1)
        r, c = np.divmod(flat, burnt.shape[1])
        rows.append(r + int(window.row_off))
        cols.append(c + int(window.col_off))
    label, row, col = (np.concatenate(a) for a in (labels, rows, cols))
    shared = coverage[row, col] > 1
    missing = idx[np.bincount(label, minlength=len(batch.out))[idx] == 0]
    if len(missing):
        points = shapely.point_on_surface(batch.on_map[missing])
        pr, pc = rasterio.transform.rowcol(layers.transform, shapely.get_x(points), shapely.get_y(points))
        pr, pc = np.asarray(pr), np.asarray(pc)
        on = (pr >= 0) & (pr < layers.shape[0]) & (pc >= 0) & (pc < layers.shape[1])
        label = np.concatenate([label, missing[on]])
        row, col = np.concatenate([row, pr[on]]), np.concatenate([col, pc[on]])
        shared = np.concatenate([shared, np.zeros(int(on.sum()), dtype=bool)])
    return label, row, col, shared


def _statistics(batch: _Batch, layers: MapLayers, coverage: np.ndarray) -> dict[str, np.ndarray]:
    """The computed columns of one batch (see the module docstring)."""
    n, k = len(batch.out), len(layers.class_names)
    label, row, col, shared = _pixels(batch, layers, coverage)
    classes = layers.classes[row, col]
    mapped = classes != NODATA
    code = np.where(classes == UNCERTAIN, k, classes)
    counts = np.bincount(label[mapped] * (k + 1) + code[mapped], minlength=n * (k + 1)).reshape(n, k + 1)
    n_mapped = counts.sum(axis=1)
    classified = counts[:, :k]
    majority = classified.argmax(axis=1)
    has_class = classified.sum(axis=1) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        majority_share = np.where(has_class, classified.max(axis=1) / n_mapped, np.nan)
        uncertain_share = np.where(n_mapped > 0, counts[:, k] / n_mapped, np.nan)
        conf = layers.confidence[row, col]
        finite = mapped & np.isfinite(conf)
        confidence = (np.bincount(label[finite], weights=conf[finite], minlength=n)
                      / np.bincount(label[finite], minlength=n))
    overlaps = np.bincount(label, weights=shared, minlength=n) > 0
    columns: dict[str, np.ndarray] = {
        "class_id": np.where(has_class, majority, -1), "majority_share": majority_share,
        "confidence": confidence, "uncertain_share": uncertain_share, "pixels": n_mapped,
        "overlaps": overlaps,
    }
    window = batch.window
    if window is not None and len(label):
        r0, c0 = int(window.row_off), int(window.col_off)
        ndvi = layers.ndvi.isel(y=slice(r0, r0 + int(window.height)), x=slice(c0, c0 + int(window.width))).values
        for t, name in enumerate(layers.months):
            columns[name] = _group_median(label, ndvi[t][row - r0, col - c0], n)
    else:
        for name in layers.months:
            columns[name] = np.full(n, np.nan)
    return columns


def _status(batch: _Batch, stats: Mapping[str, np.ndarray], pixel_area_ha: float) -> tuple[list[str], list[str]]:
    statuses, notes = [], []
    for i in range(len(batch.out)):
        reason = batch.reasons[i]
        note = [reason] if reason else []
        if batch.out[i] is None:
            statuses.append(INVALID)
        elif not batch.inside[i]:
            statuses.append(OUTSIDE)
            note.append("outside the map's extent")
        elif stats["pixels"][i] == 0:
            statuses.append(NO_DATA)
            note.append("no map data under it")
        else:
            tiny = batch.area_ha[i] < pixel_area_ha
            statuses.append(TINY if tiny else OK)
            if tiny:
                note.append("smaller than one pixel: the pixel under it")
        if statuses[-1] in (OK, TINY):
            if batch.outside_share[i] > 0.005:
                note.append(f"{100 * batch.outside_share[i]:.0f} % outside the map")
            if stats["overlaps"][i]:
                note.append("overlaps another parcel")
        notes.append("; ".join(note))
    return statuses, notes


# ---------------------------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_outputs(paths: Mapping[str, Path]) -> Iterator[dict[str, Path]]:
    """Temporary files beside ``paths`` (same suffixes), renamed onto them when the block succeeds and removed
    when it fails: no partial file is ever left. Write errors become :class:`ExportError`."""
    tmps: dict[str, Path] = {}
    try:
        for key, dst in paths.items():
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=dst.suffix, dir=dst.parent)
            os.close(fd)
            Path(tmp).unlink()  # drivers create the file themselves
            tmps[key] = Path(tmp)
        yield tmps
        for key, tmp in tmps.items():
            tmp.replace(paths[key])
    except ExportError:
        raise
    except OSError as exc:
        raise write_error(next(iter(paths.values())), exc) from exc
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)


def geo_metadata(crs: CRS, column: str = "geometry") -> bytes:
    """GeoParquet 1.1 file metadata for one WKB MultiPolygon column."""
    return json.dumps({"version": "1.1.0", "primary_column": column, "columns": {column: {
        "encoding": "WKB", "geometry_types": ["MultiPolygon"], "crs": crs.to_json_dict()}}}).encode()


class _Writer:
    """Appends batches (Arrow tables with a WKB ``geometry`` column) to a GeoPackage and/or a GeoParquet file."""

    def __init__(self, paths: Mapping[str, Path], crs: CRS) -> None:
        self.paths, self.crs = paths, crs
        self.parquet: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema.with_metadata({b"geo": geo_metadata(self.crs)})
        table = table.cast(self.schema)
        try:
            if "gpkg" in self.paths:
                pyogrio.write_arrow(table, self.paths["gpkg"], layer="parcels", driver="GPKG",
                                    geometry_name="geometry", geometry_type="MultiPolygon", crs=self.crs.to_wkt(),
                                    append=self.paths["gpkg"].exists())
            if "parquet" in self.paths:
                if self.parquet is None:
                    self.parquet = pq.ParquetWriter(self.paths["parquet"], self.schema)
                self.parquet.write_table(table)
        except (DataSourceError, DataLayerError, pa.ArrowException) as exc:
            raise write_error(next(iter(self.paths.values())), exc) from exc

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()


def _table(attributes: pa.Table, batch: _Batch, stats: Mapping[str, np.ndarray], statuses: list[str],
           notes: list[str], first: int, layers: MapLayers) -> pa.Table:
    n = len(batch.out)
    usable = np.array([s in (OK, TINY) for s in statuses], dtype=bool)
    has_class = usable & (stats["class_id"] >= 0)
    names = np.array(layers.class_names, dtype=object)

    def masked(values: np.ndarray, keep: np.ndarray, kind: pa.DataType) -> pa.Array:
        return pa.array(values, type=kind, mask=~keep)

    columns = {
        "parcel": pa.array(np.arange(first + 1, first + n + 1), type=pa.int64()),
        "status": pa.array(statuses, type=pa.string()),
        "note": pa.array(notes, type=pa.string()),
        "class_id": masked(np.maximum(stats["class_id"], 0), has_class, pa.int16()),
        "class": masked(names[np.maximum(stats["class_id"], 0)], has_class, pa.string()),
        "majority_share": masked(stats["majority_share"], has_class, pa.float64()),
        "confidence": masked(stats["confidence"], usable & np.isfinite(stats["confidence"]), pa.float64()),
        "uncertain_share": masked(stats["uncertain_share"], usable, pa.float64()),
        "area_ha": masked(batch.area_ha, np.isfinite(batch.area_ha), pa.float64()),
        "pixels": pa.array(np.where(usable, stats["pixels"], 0), type=pa.int64()),
        "overlaps": pa.array(stats["overlaps"] & usable, type=pa.bool_()),
        **{m: masked(stats[m], usable & np.isfinite(stats[m]), pa.float64()) for m in layers.months},
    }
    for name in attributes.column_names:
        key = name
        while key.lower() in _RESERVED or key in columns:
            key = f"{key}_input"
        columns[key] = attributes.column(name)
    wkb = shapely.to_wkb(batch.out)
    columns["geometry"] = pa.array(list(wkb), type=pa.binary())
    return pa.table(columns)


# ---------------------------------------------------------------------------------------------- the pass


def _coverage(source: ParcelFile, layers: MapLayers, size: int) -> np.ndarray:
    """How many parcels cover each map pixel (centres), over all batches."""
    coverage = np.zeros(layers.shape, dtype=np.uint16)
    for _, geoms in read_batches(source, size):
        batch = _prepare(geoms, source.crs, layers, details=False)
        idx = batch.rasterisable()
        if batch.window is None or not len(idx):
            continue
        w = batch.window
        burnt = _rasterize(batch.on_map[idx], np.ones(len(idx), dtype=np.uint16), w, layers.transform,
                           dtype="uint16", add=True)
        coverage[int(w.row_off):int(w.row_off + w.height), int(w.col_off):int(w.col_off + w.width)] += burnt
    return coverage


def parcel_stats(source: Path | str | ParcelFile, layers: MapLayers, out: Mapping[str, Path], *,
                 batch_size: int = BATCH, progress: Progress | None = None) -> ParcelSummary:
    """Summarise every parcel of ``source`` on ``layers`` and write the rows to ``out`` (keys ``gpkg``,
    ``parquet``): one batch in memory at a time, all files or none.

    Raises :class:`ConfigError` for an unreadable file and :class:`ExportError` when writing fails.
    """
    report = progress or (lambda _f, _m: None)
    unknown = set(out) - {"gpkg", "parquet"}
    if unknown or not out:
        raise ConfigError(f"parcel outputs are 'gpkg' and/or 'parquet', got {sorted(out) or 'none'}")
    t0 = time.perf_counter()
    parcels = source if isinstance(source, ParcelFile) else open_parcels(source)
    summary = ParcelSummary(notes=[parcels.note] if parcels.note else [])
    expected = parcels.count or 0
    report(0.0, "finding overlaps")
    try:
        coverage = _coverage(parcels, layers, batch_size)
        pixel_ha = layers.pixel_area_m2 / 1e4
        with atomic_outputs(out) as tmps:
            writer = _Writer(tmps, parcels.crs)
            try:
                for attributes, geoms in read_batches(parcels, batch_size):
                    batch = _prepare(geoms, parcels.crs, layers)
                    stats = _statistics(batch, layers, coverage)
                    statuses, notes = _status(batch, stats, pixel_ha)
                    writer.write(_table(attributes, batch, stats, statuses, notes, summary.total, layers))
                    summary.total += len(statuses)
                    for s in statuses:
                        summary.by_status[s] += 1
                    usable = np.isin(statuses, (OK, TINY))
                    summary.repaired += int(batch.repaired.sum())
                    summary.overlapping += int((stats["overlaps"] & usable).sum())
                    summary.partly_outside += int(((batch.outside_share > 0.005) & usable).sum())
                    report(min(summary.total / expected, 1.0) if expected else 0.5, f"{summary.total:,} parcels")
            finally:
                writer.close()
            if summary.total == 0:
                raise ConfigError(f"{parcels.path.name} holds no parcels")
    except (DataSourceError, DataLayerError, pa.ArrowInvalid) as exc:
        raise ConfigError(f"{parcels.path.name} could not be read: {str(exc).splitlines()[0]}") from None
    summary.paths = dict(out)
    summary.seconds = time.perf_counter() - t0
    return summary
