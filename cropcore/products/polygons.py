"""The crop map as field polygons: vectorised, small specks merged under a minimum mapping unit (MMU).

:func:`vectorize` sieves the class map (``rasterio.features.sieve``: connected regions, 4-connectivity, smaller
than the MMU in pixels are merged into their largest neighbour), turns it into polygons
(``rasterio.features.shapes``) and gives each its class, area and mean confidence.

- **No data** pixels (255) are masked out: they never form a polygon and nothing is merged into them. A region
  below the MMU with no classified neighbour (an island in no data) cannot be merged: it is dropped, and
  counted in the summary.
- **Uncertain** pixels (254, confidence below the run's threshold) are a class of their own: regions of at least
  the MMU become polygons with ``class_id`` 254 and ``class`` "uncertain"; smaller ones are merged like any speck.
- ``confidence`` is the mean calibrated confidence of the polygon's pixels (merged specks keep their own).

:func:`write_polygons` writes GeoPackage or GeoParquet in the map's CRS, and GeoJSON in lon/lat (RFC 7946),
atomically.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
import xarray as xr
from pyproj import CRS

from cropcore.errors import ConfigError
from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.legend import UNCERTAIN_NAME
from cropcore.products.parcels import atomic_outputs
from cropcore.products.stats import pixel_areas_m2

#: Default minimum mapping unit, hectares (10 pixels of 10 m).
DEFAULT_MMU_HA = 0.1
#: Output formats by suffix: (label, MIME type).
FORMATS = {".gpkg": ("GeoPackage", "application/geopackage+sqlite3"),
           ".parquet": ("GeoParquet", "application/vnd.apache.parquet"),
           ".geojson": ("GeoJSON", "application/geo+json")}


@dataclass(frozen=True)
class PolygonSummary:
    """What :func:`vectorize` made: polygons, the MMU in hectares and pixels, islands dropped."""

    polygons: int
    mmu_ha: float
    mmu_pixels: int
    dropped: int
    uncertain: int

    def line(self) -> str:
        text = (f"{self.polygons:,} polygons (minimum mapping unit {self.mmu_ha:g} ha = {self.mmu_pixels} "
                f"pixels; {self.uncertain:,} uncertain)")
        if self.dropped:
            text += f"; {self.dropped:,} isolated regions below it (surrounded by no data) dropped"
        return text


def mmu_pixels(mmu_ha: float, pixel_m2: float) -> int:
    """Pixels a region needs to reach ``mmu_ha`` (at least 1)."""
    if not math.isfinite(mmu_ha) or mmu_ha < 0:
        raise ConfigError(f"the minimum mapping unit must be 0 or more hectares, got {mmu_ha}")
    return max(1, math.ceil(round(mmu_ha * 1e4 / pixel_m2, 6)))


def vectorize(prediction: xr.Dataset, class_names: list[str] | tuple[str, ...], *,
              mmu_ha: float = DEFAULT_MMU_HA) -> tuple[gpd.GeoDataFrame, PolygonSummary]:
    """Field polygons of a prediction's ``class`` map with ``class_id``, ``class``, ``area_ha``, ``pixels`` and
    mean ``confidence``, in the map's CRS (see the module docstring for no data and uncertain pixels)."""
    da = prediction["class"]
    area = pixel_areas_m2(da)
    pixel_m2 = float(np.mean(area))
    size = mmu_pixels(mmu_ha, pixel_m2)
    classes = np.asarray(da.values)
    valid = classes != NODATA
    transform = da.rio.transform()
    if size > 1:
        classes = rasterio.features.sieve(classes, size, mask=valid, connectivity=4)
    shapes = list(rasterio.features.shapes(classes, mask=valid, connectivity=4, transform=transform))
    geoms = np.array([shapely.geometry.shape(g) for g, _ in shapes], dtype=object)
    values = np.array([int(v) for _, v in shapes], dtype=np.int64)
    ids = rasterio.features.rasterize(zip(geoms, range(1, len(geoms) + 1), strict=True), out_shape=classes.shape,
                                      transform=transform, fill=0, dtype="int32") if len(geoms) else classes * 0
    n = len(geoms) + 1
    pixels = np.bincount(ids.ravel(), minlength=n)[1:]
    weights = np.broadcast_to(area, classes.shape).ravel()
    hectares = np.bincount(ids.ravel(), weights=weights, minlength=n)[1:] / 1e4
    conf = np.asarray(prediction["confidence"].values, dtype="float64").ravel()
    finite = np.isfinite(conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = (np.bincount(ids.ravel()[finite], weights=conf[finite], minlength=n)
                      / np.bincount(ids.ravel()[finite], minlength=n))[1:]
    keep = pixels >= size
    names = {**dict(enumerate(class_names)), UNCERTAIN: UNCERTAIN_NAME}
    gdf = gpd.GeoDataFrame({
        "class_id": values[keep].astype("int16"),
        "class": [names.get(int(v), str(v)) for v in values[keep]],
        "area_ha": hectares[keep], "pixels": pixels[keep], "confidence": confidence[keep],
    }, geometry=list(geoms[keep]), crs=CRS.from_user_input(da.rio.crs))
    summary = PolygonSummary(len(gdf), mmu_ha, size, int((~keep).sum()), int((gdf["class_id"] == UNCERTAIN).sum()))
    return gdf, summary


def write_polygons(gdf: gpd.GeoDataFrame, path: Path) -> Path:
    """Write polygons as GeoPackage (.gpkg), GeoParquet (.parquet) or GeoJSON (.geojson, lon/lat), atomically."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{path.name}: polygons are written as .gpkg, .parquet or .geojson")
    with atomic_outputs({"out": path}) as tmps:
        tmp = tmps["out"]
        if suffix == ".parquet":
            gdf.to_parquet(tmp, index=False)
        elif suffix == ".gpkg":
            gdf.to_file(tmp, driver="GPKG", layer="polygons", engine="pyogrio")
        else:
            gdf.to_crs(4326).to_file(tmp, driver="GeoJSON", engine="pyogrio")
    return path


def polygon_bytes(gdf: gpd.GeoDataFrame, suffix: str) -> bytes:
    """The file :func:`write_polygons` writes for ``suffix``, in memory (for downloads)."""
    with tempfile.TemporaryDirectory(prefix="cropcore-polygons-") as folder:
        return write_polygons(gdf, Path(folder) / f"polygons{suffix}").read_bytes()
