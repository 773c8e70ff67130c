"""Statistics of crop maps: area per class, NDVI phenology per class."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401 (registers .rio)
import xarray as xr
from pyproj import Geod

from cropcore.errors import ConfigError
from cropcore.inference.options import NODATA

_GEOD = Geod(ellps="WGS84")


def pixel_areas_m2(da: xr.DataArray) -> np.ndarray | float:
    """Area of each pixel in m²: constant on a projected metre grid (e.g. UTM), per row on a lon/lat grid."""
    crs = da.rio.crs
    if crs is None:
        raise ConfigError("the map has no CRS, so its pixel area is unknown")
    transform = da.rio.transform()
    if crs.is_projected:
        unit = crs.linear_units_factor[1] if hasattr(crs, "linear_units_factor") else 1.0
        return abs(transform.a * transform.e) * unit**2
    # geographic: geodesic area of one pixel in every row (columns share it)
    rows = np.arange(da.sizes["y"])
    top = transform.f + rows * transform.e
    lons = [0.0, transform.a, transform.a, 0.0]
    per_row = [abs(_GEOD.polygon_area_perimeter(lons, [t, t, t + transform.e, t + transform.e])[0]) for t in top]
    return np.asarray(per_row)[:, np.newaxis]


def class_areas(
    class_map: xr.DataArray, class_names: Sequence[str], *, nodata: int | None = NODATA, rows: int = 1024
) -> pd.DataFrame:
    """Pixels, hectares and percent of the mapped area for every class (zero rows included).

    The map is read ``rows`` rows at a time, so a lazily opened map of any size needs little memory.
    """
    k = len(class_names)
    area = pixel_areas_m2(class_map)  # scalar (projected grid) or one value per row (lon/lat grid)
    pixels = np.zeros(k, dtype=np.int64)
    hectares = np.zeros(k)
    for r in range(0, class_map.sizes["y"], rows):
        values = np.asarray(class_map.isel(y=slice(r, r + rows)).values)
        valid = values != nodata if nodata is not None else np.ones(values.shape, dtype=bool)
        found = values[valid]
        if found.size and found.max() >= k:
            raise ConfigError(f"the map holds class {int(found.max())} but the legend has {k} classes")
        weights = np.broadcast_to(area if np.ndim(area) == 0 else area[r:r + rows], values.shape)[valid]
        pixels += np.bincount(found, minlength=k)
        hectares += np.bincount(found, weights=weights, minlength=k) / 1e4
    total = hectares.sum()
    return pd.DataFrame({
        "class_id": np.arange(k),
        "class": list(class_names),
        "pixels": pixels,
        "hectares": hectares,
        "percent": 100 * hectares / total if total else np.zeros(k),
    })


def phenology(
    reflectance: xr.DataArray, class_map: xr.DataArray, class_names: Sequence[str], nodata: int | None = NODATA
) -> pd.DataFrame:
    """NDVI median and inter-quartile range per class and time step (classes without pixels left out).

    ``reflectance`` is a (time, band, y, x) cube with bands B08 and B04; ``class_map`` a (y, x) map on the
    same grid. Returns one row per (class, time): class_id, class, time, median, q25, q75, pixels (the
    class's mapped pixels; NaN observations are skipped in the quantiles).
    """
    from cropcore.cube.indices import spectral_index

    classes = np.asarray(class_map.values)
    if classes.shape != (reflectance.sizes["y"], reflectance.sizes["x"]):
        raise ConfigError(f"the class map {classes.shape} and the cube "
                          f"({reflectance.sizes['y']}, {reflectance.sizes['x']}) are not on the same grid")
    ndvi = np.asarray(spectral_index(reflectance, "NDVI").transpose("time", "y", "x").values)
    times = pd.DatetimeIndex(reflectance["time"].values)
    valid = classes != nodata if nodata is not None else np.ones(classes.shape, dtype=bool)
    k = len(class_names)
    if classes[valid].size and classes[valid].max() >= k:
        raise ConfigError(f"the map holds class {int(classes[valid].max())} but the legend has {k} classes")
    frames = []
    for class_id in np.unique(classes[valid]):
        series = ndvi[:, classes == class_id]  # (time, pixels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps give NaN, as they should
            q25, median, q75 = np.nanpercentile(series, [25, 50, 75], axis=1)
        frames.append(pd.DataFrame({
            "class_id": int(class_id), "class": class_names[class_id], "time": times,
            "median": median, "q25": q25, "q75": q75, "pixels": series.shape[1],
        }))
    columns = ["class_id", "class", "time", "median", "q25", "q75", "pixels"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
