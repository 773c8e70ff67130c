"""Tile-level "agricultural?" scoring of an AOI with the patch classifiers: :func:`score_aoi`, :func:`score_tiles`.

The AOI's grid is cut into 120 x 120 px tiles (1.2 km at 10 m, the BigEarthNet patch size) from its top-left
corner; the tiles at the right and bottom edges keep their real extent and are padded to 120 px by mirroring
their own pixels (``numpy.pad`` ``symmetric``), so an AOI smaller than one tile is scored as one padded tile.
Each tile gets the binary classifier's probability of agriculture (default :data:`GATE_MODEL`) and the 19
BigEarthNet label probabilities (:data:`LABEL_MODEL`).

Input: one cloud-free 12-band reflectance image per AOI, the **median of the scenes of June to August**
(SCL-masked where they have SCL) in the date range (every scene of the range if it has none in those months),
made by the same loading (:func:`~cropcore.cube.load.load_cube`) and preprocessing
(:func:`~cropcore.cube.preprocess.preprocess`, one composite bin) as the crop map. The classifiers learnt from
single dates (BigEarthNet, June 2017 to May 2018): a median of summer scenes is close to one clear summer date
while ignoring the clouds and cloud shadows any one scene may hold, and summer is when fields and pastures look
most unlike forest, water and towns. Reflectance is DN * scale + offset as each item states it (DN / 10000 for
Level-2A before processing baseline 04.00, as BigEarthNet).

Bands the scenes lack (the embedded catalog's WorldCereal composites have no B01, B8A, B09) are copied from
the nearest band by centre wavelength that they have (B01 <- B02, B8A <- B08, B09 <- B8A or B08) and listed in
:attr:`TileScores.filled`; the four 10 m bands are required. Pixels without data stay NaN, which the
classifier reads as the training mean of the band.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pystac
import xarray as xr
from pyproj import CRS, Transformer

from cropcore.aoi import AOILike
from cropcore.cube.dask_setup import compute
from cropcore.cube.load import load_cube
from cropcore.cube.preprocess import preprocess, time_axis
from cropcore.dates import DateLike, normalize_daterange
from cropcore.errors import ConfigError, NoItemsFoundError
from cropcore.inference.tiling import Tile
from cropcore.legend import S2_BANDS
from cropcore.patches.data import BANDS, CLASSES19, SIZE
from cropcore.patches.predict import PatchClassifier
from cropcore.stac.bands import asset_key
from cropcore.stac.catalog import search_items

#: The binary classifier that says whether a tile holds agriculture (and gates ``predict``).
GATE_MODEL = "patch_cnnvit_agri"
#: The multi-label classifier giving the 19 BigEarthNet labels of a tile.
LABEL_MODEL = "patch_resnet50_ben19"
#: Months whose scenes make the composite (when the date range has any).
SUMMER = (6, 7, 8)
#: Bands the scenes must have; the others may be filled from a spectral neighbour.
REQUIRED = ("B02", "B03", "B04", "B08")


@dataclass(frozen=True)
class Composite:
    """The tile classifiers' input over an AOI: reflectance (band, y, x) in :data:`BANDS` order on the AOI's grid,
    the bands filled from a neighbour (``{missing: source}``) and the scenes it is the median of."""

    reflectance: xr.DataArray
    filled: dict[str, str]
    scenes: list[str]


@dataclass
class TileScores:
    """Scores of the tiles of a grid: ``tiles`` (windows in pixels, the last row and column may be smaller than
    :data:`SIZE`), ``agri`` (N,) from ``gate_model``, ``labels`` (N, 19) BigEarthNet probabilities, ``valid`` (N,)
    the share of each tile's pixels that hold data, ``bounds`` (N, 4) in the grid's CRS and ``lonlat`` (N, 4) west,
    south, east, north. ``labels`` is ``None`` when no label model was run."""

    tiles: list[Tile]
    agri: np.ndarray
    labels: np.ndarray | None
    valid: np.ndarray
    bounds: np.ndarray
    lonlat: np.ndarray
    shape: tuple[int, int]
    gate_model: str
    gate_threshold: float | None
    filled: dict[str, str] = field(default_factory=dict)
    scenes: list[str] = field(default_factory=list)

    @property
    def padded(self) -> bool:
        """Whether some tile is smaller than :data:`SIZE` (padded to score it; always so for a small AOI)."""
        return any((t.height, t.width) != (SIZE, SIZE) for t in self.tiles)

    def top_labels(self, i: int, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable BigEarthNet labels of tile ``i`` (none without labels)."""
        if self.labels is None:
            return []
        order = np.argsort(-self.labels[i])[:k]
        return [(CLASSES19[j], float(self.labels[i, j])) for j in order]

    def table(self, k: int = 3) -> pd.DataFrame:
        """One row per tile: position, size, agricultural probability, data share and the top ``k`` labels."""
        rows = [{"tile": f"r{t.row // SIZE}c{t.col // SIZE}", "size_px": f"{t.height} x {t.width}",
                 "agricultural": round(float(self.agri[i]), 3), "data_share": round(float(self.valid[i]), 3),
                 "top_labels": "; ".join(f"{name} {p:.2f}" for name, p in self.top_labels(i, k))}
                for i, t in enumerate(self.tiles)]
        return pd.DataFrame(rows)

    def geojson(self, k: int = 3) -> dict[str, Any]:
        """The tiles as a lon/lat GeoJSON FeatureCollection with ``agri``, ``top_labels`` and ``tile`` properties."""
        table = self.table(k)
        features = []
        for i, (west, south, east, north) in enumerate(self.lonlat.tolist()):
            ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
            features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                             "properties": {"tile": table.tile[i], "agri": round(float(self.agri[i]), 3),
                                            "top_labels": table.top_labels[i]}})
        return {"type": "FeatureCollection", "features": features}


def tile_grid(height: int, width: int, size: int = SIZE) -> list[Tile]:
    """Non-overlapping ``size`` x ``size`` windows from the top-left corner, row by row; the last row and column
    keep what is left (at least one window, also for a raster smaller than ``size``)."""
    if height < 1 or width < 1:
        raise ConfigError(f"the grid is empty ({height} x {width} px): draw a larger area")
    return [Tile(r, c, min(size, height - r), min(size, width - c))
            for r in range(0, height, size) for c in range(0, width, size)]


def cut_tiles(image: np.ndarray, tiles: Sequence[Tile], size: int = SIZE) -> np.ndarray:
    """The windows ``tiles`` of ``image`` (bands, H, W) as (N, bands, size, size); smaller windows are padded at their
    bottom and right by mirroring their own pixels."""
    out = np.empty((len(tiles), image.shape[0], size, size), np.float32)
    for i, t in enumerate(tiles):
        window = image[(slice(None), *t.slices)]
        out[i] = np.pad(window, ((0, 0), (0, size - t.height), (0, size - t.width)), mode="symmetric")
    return out


def fill_sources(have: Sequence[str]) -> dict[str, str]:
    """For each band of :data:`BANDS` not in ``have``, the band of ``have`` nearest in centre wavelength."""
    missing = [b for b in REQUIRED if b not in have]
    if missing:
        raise ConfigError(f"the scenes lack the bands {missing}, which the tile classifiers need (they have "
                          f"{sorted(have)}): use a Level-2A collection with all 10 m bands")
    wavelength = {b: S2_BANDS[b].center_wavelength for b in S2_BANDS}
    return {b: min(have, key=lambda h: abs(wavelength[h] - wavelength[b])) for b in BANDS if b not in have}


def composite_scenes(items: Sequence[pystac.Item], start: DateLike, end: DateLike) -> list[pystac.Item]:
    """The items the composite is the median of: those of June to August in the range, else all of the range."""
    first, last = normalize_daterange((start, end))
    lo, hi = (None if d is None else d.date() for d in (first, last))
    dated = [i for i in items if i.datetime is not None
             and (lo is None or i.datetime.date() >= lo) and (hi is None or i.datetime.date() <= hi)]
    summer = [i for i in dated if i.datetime.month in SUMMER]
    return summer or dated


def load_composite(items: Sequence[pystac.Item], aoi: AOILike, start: DateLike, end: DateLike, *,
                   resolution: float = 10.0, chunks: dict[str, int] | None = None) -> Composite:
    """The 12-band median composite (see the module docstring) of ``items`` over ``aoi``, computed."""
    scenes = composite_scenes(items, start, end)
    if not scenes:
        raise NoItemsFoundError("no scene in the date range to score the tiles with: widen the dates")
    have = [b for b in S2_BANDS if all(asset_key(i, b) is not None for i in scenes)]
    filled = fill_sources(have)
    has_scl = all(asset_key(i, "SCL") is not None for i in scenes)
    loaded = load_cube(scenes, [*[b for b in BANDS if b in have], *(["SCL"] if has_scl else [])], aoi=aoi,
                       resolution=resolution, chunks=chunks)
    days = pd.DatetimeIndex([i.datetime.replace(tzinfo=None) for i in scenes])
    width = (days.max().normalize() - days.min().normalize()).days + 1
    axis = time_axis(days.min(), freq=f"{width}D", periods=1)
    refl = preprocess(loaded.cube, freq=f"{width}D", axis=axis).isel(time=0, drop=True)
    (values,) = compute(refl.data)
    refl = refl.copy(data=values)
    full = xr.concat([refl.sel(band=filled.get(b, b)).assign_coords(band=b) for b in BANDS], dim="band")
    return Composite(full, filled, [i.id for i in scenes])


def _bounds(grid: xr.DataArray, tiles: Sequence[Tile]) -> tuple[np.ndarray, np.ndarray]:
    """Tile bounds (minx, miny, maxx, maxy) in the grid's CRS, and in lon/lat."""
    x, y = grid["x"].values, grid["y"].values
    dx, dy = abs(float(x[1] - x[0])) if len(x) > 1 else 10.0, abs(float(y[1] - y[0])) if len(y) > 1 else 10.0
    native = np.array([[x[t.col] - dx / 2, y[t.row + t.height - 1] - dy / 2, x[t.col + t.width - 1] + dx / 2,
                        y[t.row] + dy / 2] for t in tiles])
    to_lonlat = Transformer.from_crs(CRS.from_wkt(grid["spatial_ref"].attrs["crs_wkt"]), "EPSG:4326", always_xy=True)
    lonlat = np.array([to_lonlat.transform_bounds(*b) for b in native])
    return native, lonlat


def score_tiles(reflectance: xr.DataArray, *, gate_model: str = GATE_MODEL, label_model: str | None = LABEL_MODEL,
                filled: dict[str, str] | None = None, scenes: Sequence[str] = ()) -> TileScores:
    """Score the :func:`tile_grid` tiles of a (band, y, x) reflectance image in :data:`BANDS` order
    (``label_model=None``: agricultural probability only)."""
    names = [str(b) for b in reflectance["band"].values]
    if names != list(BANDS):
        raise ConfigError(f"the tile classifiers take bands {list(BANDS)} in that order, got {names}")
    image = np.asarray(reflectance.values, np.float32)
    tiles = tile_grid(*image.shape[1:])
    batch = cut_tiles(image, tiles)
    gate = PatchClassifier(gate_model)
    valid = np.array([np.isfinite(image[(slice(None), *t.slices)]).any(0).mean() for t in tiles])
    native, lonlat = _bounds(reflectance, tiles)
    labels = None if label_model is None else PatchClassifier(label_model).score(batch).labels
    return TileScores(tiles, gate.score(batch).agri, labels, valid, native, lonlat, image.shape[1:], gate_model,
                      gate.gate_threshold, dict(filled or {}), list(scenes))


def score_aoi(aoi: AOILike, start: DateLike, end: DateLike, *, catalog: str = "local", max_cloud: float | None = 80.0,
              collections: Sequence[str] | None = None, resolution: float = 10.0,
              gate_model: str = GATE_MODEL) -> TileScores:
    """Search the scenes of ``aoi`` in ``start``-``end``, make the composite and score its tiles."""
    found = search_items(aoi, (start, end), max_cloud=max_cloud, catalog=catalog, collections=collections)
    comp = load_composite(found.items, aoi, start, end, resolution=resolution)
    return score_tiles(comp.reflectance, gate_model=gate_model, filled=comp.filled, scenes=comp.scenes)
