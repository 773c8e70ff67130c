"""Rasters as map overlays (pure numpy/xarray, no streamlit): RGBA images in Web Mercator, pixel lookup.

Leaflet stretches an image overlay linearly between its corners in Web-Mercator space, so every raster
is reprojected to EPSG:3857 first and its corners given in lon/lat: the overlay then sits exactly on the
map grid instead of being sheared by the UTM-to-lon/lat difference.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import rioxarray  # noqa: F401 (registers .rio)
import xarray as xr
from matplotlib import colormaps
from pyproj import Transformer
from rasterio.enums import Resampling

from cropcore.errors import ConfigError
from cropcore.inference.options import NODATA

WEB_MERCATOR = "EPSG:3857"
Bounds = list[list[float]]  # [[south, west], [north, east]], as folium wants it
#: Largest side, in pixels, of an image sent to the browser as an overlay.
MAX_OVERLAY_PX = 2048


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def latlon_bounds(da: xr.DataArray) -> Bounds:
    """Corners of a (Web-Mercator) raster as ``[[south, west], [north, east]]``."""
    west, south, east, north = da.rio.transform_bounds("EPSG:4326")
    return [[south, west], [north, east]]


def to_web_mercator(
    da: xr.DataArray, *, nodata: float | None, categorical: bool, max_px: int = MAX_OVERLAY_PX
) -> xr.DataArray:
    """``da`` reprojected to EPSG:3857 (nearest for classes, bilinear for continuous values).

    Rasters larger than ``max_px`` on a side are subsampled first, so the browser gets a bounded image.
    """
    if da.rio.crs is None:
        raise ConfigError("the raster has no CRS, so it cannot be placed on the map")
    step = -(-max(da.sizes["y"], da.sizes["x"]) // max_px)
    if step > 1:
        da = da.isel(y=slice(step // 2, None, step), x=slice(step // 2, None, step))
    if nodata is not None:
        da = da.rio.write_nodata(nodata)
    resampling = Resampling.nearest if categorical else Resampling.bilinear
    return da.rio.reproject(WEB_MERCATOR, resampling=resampling, nodata=nodata)


def class_rgba(classes: np.ndarray, colors: Mapping[int, str], *, nodata: int = NODATA) -> np.ndarray:
    """(H, W, 4) uint8 image of a class map: legend colours, nodata (and unknown classes) transparent."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for value, colour in colors.items():
        lut[int(value)] = (*_hex_rgb(colour), 255)
    lut[nodata] = 0
    return lut[np.asarray(classes, dtype=np.uint8)]


def scalar_rgba(values: np.ndarray, *, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "magma") -> np.ndarray:
    """(H, W, 4) uint8 image of a continuous raster (e.g. confidence); NaN transparent."""
    values = np.asarray(values, dtype="float32")
    scaled = np.clip((values - vmin) / (vmax - vmin or 1.0), 0, 1)
    rgba = (colormaps[cmap](np.nan_to_num(scaled)) * 255).astype(np.uint8)
    rgba[~np.isfinite(values)] = 0
    return rgba


def stretch(rgb: np.ndarray, *, low: float = 2, high: float = 98) -> np.ndarray:
    """Percentile stretch of a (3, H, W) reflectance stack to (H, W, 4) uint8; NaN pixels transparent."""
    rgb = np.asarray(rgb, dtype="float32")
    valid = np.isfinite(rgb).all(axis=0)
    out = np.zeros((*rgb.shape[1:], 4), dtype=np.uint8)
    if not valid.any():
        return out
    lo, hi = np.percentile(rgb[:, valid], [low, high])
    scaled = np.clip((rgb - lo) / (hi - lo or 1.0), 0, 1)
    out[..., :3] = (np.moveaxis(np.nan_to_num(scaled), 0, -1) * 255).astype(np.uint8)
    out[..., 3] = np.where(valid, 255, 0)
    return out


def true_colour(reflectance: xr.DataArray, month: int | None = None,
                bands: Sequence[str] = ("B04", "B03", "B02")) -> xr.DataArray:
    """(band, y, x) red/green/blue reflectance: the ``month``-th step of the time axis, or the median."""
    missing = [b for b in bands if b not in reflectance.coords["band"].values]
    if missing:
        raise ConfigError(f"the cube has no band {', '.join(missing)}: a true-colour image needs B04, B03, B02")
    rgb = reflectance.sel(band=list(bands))
    rgb = rgb.isel(time=month) if month is not None else rgb.median("time", skipna=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels outside the area are NaN at every step
        return rgb.transpose("band", "y", "x").compute()


def xy_at(da: xr.DataArray, lat: float, lon: float) -> tuple[float, float] | None:
    """The coordinates (x, y) in ``da``'s CRS of the pixel under (lat, lon), or None outside the raster."""
    x, y = Transformer.from_crs("EPSG:4326", da.rio.crs, always_xy=True).transform(lon, lat)
    left, bottom, right, top = da.rio.bounds()
    if not (left <= x <= right and bottom <= y <= top):
        return None
    px = da.sel(x=x, y=y, method="nearest")
    return float(px.x), float(px.y)


def pixel_ndvi(reflectance: xr.DataArray, x: float, y: float) -> np.ndarray:
    """The NDVI time series of the pixel at (x, y) (coordinates of the cube's grid, e.g. from :func:`xy_at`)."""
    from cropcore.cube.indices import spectral_index

    return np.asarray(spectral_index(reflectance.sel(x=[x], y=[y]), "NDVI").values).reshape(-1)
