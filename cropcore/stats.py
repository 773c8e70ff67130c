"""Statistics of crop maps: area per class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401 (registers .rio)
import xarray as xr
from pyproj import Geod

from cropcore.errors import ConfigError

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
    class_map: xr.DataArray, class_names: Sequence[str], *, nodata: int | None = 255
) -> pd.DataFrame:
    """Pixels, hectares and percent of the mapped area for every class (zero rows included)."""
    values = np.asarray(class_map.values)
    areas = np.broadcast_to(pixel_areas_m2(class_map), values.shape)
    valid = values != nodata if nodata is not None else np.ones(values.shape, dtype=bool)
    k = len(class_names)
    if values[valid].size and values[valid].max() >= k:
        raise ConfigError(f"the map holds class {int(values[valid].max())} but the legend has {k} classes")
    pixels = np.bincount(values[valid].ravel(), minlength=k)
    hectares = np.bincount(values[valid].ravel(), weights=areas[valid].ravel(), minlength=k) / 1e4
    total = hectares.sum()
    return pd.DataFrame({
        "class_id": np.arange(k),
        "class": list(class_names),
        "pixels": pixels,
        "hectares": hectares,
        "percent": 100 * hectares / total if total else np.zeros(k),
    })
