"""Statistics of crop maps: area per class (uncertain pixels and the cropland total apart), NDVI phenology per class."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401 (registers .rio)
import xarray as xr
from pyproj import Geod

from cropcore.errors import ConfigError
from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.legend import UNCERTAIN_NAME

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


def _check_codes(found: np.ndarray, ids: Sequence[int], k: int) -> None:
    """Refuse map values that are not among ``ids`` (the legend's ``k`` classes, maybe :data:`UNCERTAIN`)."""
    allowed = np.zeros(256, dtype=bool)
    allowed[list(ids)] = True
    wrong = np.unique(found[~allowed[found]])
    if UNCERTAIN in wrong:
        raise ConfigError("the map holds uncertain pixels: give the legend's crop classes (crop_ids) to count them")
    if wrong.size:
        raise ConfigError(f"the map holds class {int(wrong.max())} but the legend has {k} classes")


def class_areas(
    class_map: xr.DataArray, class_names: Sequence[str], *, nodata: int | None = NODATA,
    crop_ids: Sequence[int] | None = None, rows: int = 1024,
) -> pd.DataFrame:
    """Pixels, hectares and percent of the mapped area for every class (zero rows included).

    With ``crop_ids`` (the product's table) a ``kind`` column says ``crop``, ``non-crop`` (``class`` when no
    class is a crop) or ``uncertain`` (the :data:`UNCERTAIN` pixels, a row of their own), and a last ``cropland``
    row of kind ``total`` adds up the crop classes (uncertain pixels are not in it): the other rows sum to the
    mapped area. Without ``crop_ids`` a map holding uncertain pixels is refused. The map is read ``rows`` rows at
    a time, so a lazily opened map of any size needs little memory.
    """
    k = len(class_names)
    ids = list(range(k)) if crop_ids is None else [*range(k), UNCERTAIN]
    area = pixel_areas_m2(class_map)  # scalar (projected grid) or one value per row (lon/lat grid)
    pixels = np.zeros(256, dtype=np.int64)
    hectares = np.zeros(256)
    for r in range(0, class_map.sizes["y"], rows):
        values = np.asarray(class_map.isel(y=slice(r, r + rows)).values)
        valid = values != nodata if nodata is not None else np.ones(values.shape, dtype=bool)
        found = values[valid]
        _check_codes(found, ids, k)
        weights = np.broadcast_to(area if np.ndim(area) == 0 else area[r:r + rows], values.shape)[valid]
        pixels += np.bincount(found, minlength=256)
        hectares += np.bincount(found, weights=weights, minlength=256) / 1e4
    total = hectares[ids].sum()
    table = pd.DataFrame({
        "class_id": ids,
        "class": [*class_names, UNCERTAIN_NAME][:len(ids)],
        "pixels": pixels[ids],
        "hectares": hectares[ids],
        "percent": 100 * hectares[ids] / total if total else np.zeros(len(ids)),
    })
    if crop_ids is None:
        return table
    crops = set(crop_ids)
    table["kind"] = [("crop" if i in crops else "non-crop") if crops else "class" for i in range(k)] + ["uncertain"]
    if not crops:
        return table
    cropland = table.loc[table["kind"] == "crop", ["pixels", "hectares", "percent"]].sum()
    total_row = pd.DataFrame([{"class_id": None, "class": "cropland", **cropland.to_dict(), "kind": "total"}])
    return pd.concat([table, total_row], ignore_index=True).astype({"class_id": "Int64", "pixels": "int64"})


def phenology(
    reflectance: xr.DataArray, class_map: xr.DataArray, class_names: Sequence[str], nodata: int | None = NODATA
) -> pd.DataFrame:
    """NDVI median and inter-quartile range per class and time step (classes without pixels left out); the
    :data:`UNCERTAIN` pixels form a group of their own.

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
    names = {**dict(enumerate(class_names)), UNCERTAIN: UNCERTAIN_NAME}
    _check_codes(classes[valid], list(names), len(class_names))
    frames = []
    for class_id in np.unique(classes[valid]):
        series = ndvi[:, classes == class_id]  # (time, pixels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps give NaN, as they should
            q25, median, q75 = np.nanpercentile(series, [25, 50, 75], axis=1)
        frames.append(pd.DataFrame({
            "class_id": int(class_id), "class": names[int(class_id)], "time": times,
            "median": median, "q25": q25, "q75": q75, "pixels": series.shape[1],
        }))
    columns = ["class_id", "class", "time", "median", "q25", "q75", "pixels"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
