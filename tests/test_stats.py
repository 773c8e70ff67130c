"""Per-class area statistics."""

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from cropcore.errors import ConfigError
from cropcore.products.stats import class_areas


def grid(values, crs, x0, y0, res):
    h, w = values.shape
    da = xr.DataArray(values, dims=("y", "x"),
                      coords={"y": y0 - res * (np.arange(h) + 0.5), "x": x0 + res * (np.arange(w) + 0.5)})
    return da.rio.write_crs(crs)


def test_utm_areas_in_hectares_and_percent():
    values = np.zeros((100, 100), dtype="uint8")
    values[:25] = 1
    values[0, 0] = 255  # nodata
    table = class_areas(grid(values, "EPSG:32631", 664000, 5612120, 10), ["other", "wheat", "maize"])
    assert table["pixels"].tolist() == [7500, 2499, 0]
    assert table["hectares"].tolist() == pytest.approx([75.0, 24.99, 0.0])
    assert table["percent"].sum() == pytest.approx(100)


def test_lonlat_areas_are_geodesic():
    values = np.ones((10, 10), dtype="uint8")
    table = class_areas(grid(values, "EPSG:4326", 0.0, 1.0, 0.1), ["a", "b"])
    # one degree square at the equator is about 12,309 km² = 1,230,900 ha
    assert table.loc[1, "hectares"] == pytest.approx(1_230_900, rel=2e-3)


def test_classes_outside_the_legend_are_refused():
    with pytest.raises(ConfigError, match="legend has 2"):
        class_areas(grid(np.full((2, 2), 5, "uint8"), "EPSG:32631", 0, 0, 10), ["a", "b"])


def test_row_bands_give_the_same_areas():
    values = np.random.default_rng(0).integers(0, 3, (50, 40)).astype("uint8")
    da = grid(values, "EPSG:4326", 0.0, 1.0, 0.01)
    whole = class_areas(da, ["a", "b", "c"])
    banded = class_areas(da, ["a", "b", "c"], rows=7)
    assert whole["pixels"].tolist() == banded["pixels"].tolist()
    np.testing.assert_allclose(whole["hectares"], banded["hectares"])
