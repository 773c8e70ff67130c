"""Spectral indices of reflectance cubes (normalised differences of two bands), defined once in :data:`INDICES`."""

from __future__ import annotations

from collections.abc import Sequence

import xarray as xr

from cropcore.errors import ConfigError

#: Normalised-difference indices: name -> (a, b) for (a - b) / (a + b).
INDICES: dict[str, tuple[str, str]] = {
    "NDVI": ("B08", "B04"),  # vegetation
    "NDWI": ("B03", "B08"),  # open water (McFeeters)
    "NDMI": ("B08", "B11"),  # canopy moisture
}


def normalized_difference(cube: xr.DataArray, a: str, b: str) -> xr.DataArray:
    """``(a - b) / (a + b)`` of two bands (NaN where the sum is 0)."""
    missing = [x for x in (a, b) if x not in cube.coords["band"].values]
    if missing:
        raise ConfigError(f"the cube has no band {', '.join(missing)}: load it to compute this index")
    va, vb = cube.sel(band=a, drop=True), cube.sel(band=b, drop=True)
    total = va + vb
    return ((va - vb) / total.where(total != 0)).astype("float32")


def spectral_index(cube: xr.DataArray, name: str = "NDVI") -> xr.DataArray:
    """One index of :data:`INDICES` (e.g. NDVI) of a ``(…, band, …)`` reflectance cube, without the band axis."""
    if name not in INDICES:
        raise ConfigError(f"unknown index {name!r}: choose from {', '.join(INDICES)}")
    return normalized_difference(cube, *INDICES[name])


def add_indices(cube: xr.DataArray, names: Sequence[str] = ("NDVI",)) -> xr.DataArray:
    """Append spectral indices (see :data:`INDICES`) to the ``band`` dimension."""
    unknown = [n for n in names if n not in INDICES]
    if unknown:
        raise ConfigError(f"unknown indices {unknown}: choose from {', '.join(INDICES)}")
    extra = [spectral_index(cube, n).expand_dims(band=[n]) for n in names]
    return xr.concat([cube, *[e.transpose(*cube.dims) for e in extra]], dim="band")
