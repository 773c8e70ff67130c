"""Map overlays: RGBA images, Web-Mercator placement, pixel lookup (pure, no streamlit)."""

import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from pyproj import Transformer

from cropcore.errors import ConfigError
from cropcore.ui import overlay


def utm_grid(values: np.ndarray, x0: float = 664000, y0: float = 5612000, res: float = 10) -> xr.DataArray:
    h, w = values.shape[-2:]
    dims = ("y", "x") if values.ndim == 2 else ("time", "band", "y", "x")
    coords = {"y": y0 - res * (np.arange(h) + 0.5), "x": x0 + res * (np.arange(w) + 0.5)}
    return xr.DataArray(values, dims=dims, coords=coords).rio.write_crs("EPSG:32631")


def test_class_colours_and_transparent_nodata():
    rgba = overlay.class_rgba(np.array([[0, 1], [255, 7]], dtype="uint8"), {0: "#ff0000", 1: "#00ff80"})
    assert rgba.shape == (2, 2, 4) and rgba.dtype == np.uint8
    assert tuple(rgba[0, 0]) == (255, 0, 0, 255) and tuple(rgba[0, 1]) == (0, 255, 128, 255)
    assert rgba[1, 0, 3] == 0 and rgba[1, 1, 3] == 0  # nodata and classes outside the legend


def test_scalar_and_true_colour_images_hide_nan():
    conf = overlay.scalar_rgba(np.array([[0.0, 1.0, np.nan]]))
    assert list(conf[0, :, 3]) == [255, 255, 0]
    assert conf[0, 1, :3].sum() > conf[0, 0, :3].sum()  # confident is brighter
    rgb = np.stack([np.linspace(0, 0.3, 100).reshape(10, 10)] * 3)
    rgb[:, 0, 0] = np.nan
    image = overlay.stretch(rgb)
    assert image[0, 0, 3] == 0 and image[5, 5, 3] == 255
    assert image[..., 0].max() == 255 and image[0, 1, 0] == 0  # 2-98 % stretch saturates both ends


def test_overlay_sits_on_the_raster_footprint_in_web_mercator():
    da = utm_grid(np.zeros((100, 150), dtype="uint8"))
    merc = overlay.to_web_mercator(da, nodata=255, categorical=True)
    assert merc.rio.crs.to_epsg() == 3857 and merc.dtype == np.uint8
    (south, west), (north, east) = overlay.latlon_bounds(merc)
    to_ll = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    lon0, lat0 = to_ll.transform(664000, 5612000)  # north-west corner of the UTM grid
    assert west == pytest.approx(lon0, abs=1e-3) and north == pytest.approx(lat0, abs=1e-3)
    assert south < north and west < east
    # the UTM grid is slightly rotated against Mercator: the corners outside it are nodata
    assert (merc.values == 255).any() and (merc.values == 0).mean() > 0.9
    with pytest.raises(ConfigError, match="no CRS"):
        overlay.to_web_mercator(xr.DataArray(np.zeros((2, 2)), dims=("y", "x")), nodata=None, categorical=False)


def test_true_colour_median_or_one_step():
    data = np.zeros((3, 4, 2, 2), dtype="float32")
    data[:, 2] = np.array([0.1, 0.2, 0.9])[:, None, None]  # B04 over time
    da = utm_grid(data).assign_coords(time=pd.date_range("2021-01-01", periods=3, freq="MS"),
                                      band=["B02", "B03", "B04", "B08"])
    assert overlay.true_colour(da).sel(band="B04").values == pytest.approx(np.full((2, 2), 0.2))
    assert overlay.true_colour(da, 2).sel(band="B04").values == pytest.approx(np.full((2, 2), 0.9))
    with pytest.raises(ConfigError, match="B02"):
        overlay.true_colour(da.sel(band=["B04", "B08"]))


def test_pixel_under_a_click_and_its_ndvi():
    data = np.zeros((2, 2, 3, 3), dtype="float32")
    data[:, 0] = 0.1  # red
    data[:, 1] = np.array([0.3, 0.9])[:, None, None]  # nir
    da = utm_grid(data).assign_coords(time=pd.date_range("2021-01-01", periods=2, freq="MS"),
                                      band=["B04", "B08"])
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(664012, 5611985)
    assert overlay.xy_at(da, lat, lon) == (664015.0, 5611985.0)
    assert overlay.xy_at(da, lat + 0.01, lon) is None
    assert overlay.pixel_ndvi(da, 664015.0, 5611985.0) == pytest.approx([0.5, 0.8])


def test_large_rasters_are_subsampled_for_the_browser():
    n = 600
    da = xr.DataArray(np.zeros((n, n), dtype="uint8"), dims=("y", "x"),
                      coords={"y": 5612115.0 - 10 * np.arange(n), "x": 664005.0 + 10 * np.arange(n)})
    small = overlay.to_web_mercator(da.rio.write_crs("EPSG:32631"), nodata=255, categorical=True, max_px=100)
    assert max(small.sizes["y"], small.sizes["x"]) <= 200  # 100 px a side before reprojection
