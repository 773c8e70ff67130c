"""NDVI phenology per class: median and inter-quartile range over time."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cropcore.errors import ConfigError
from cropcore.products.stats import phenology

TIMES = pd.date_range("2020-11-01", periods=4, freq="MS")


def cube(ndvi: np.ndarray) -> xr.DataArray:
    """A (time, band, y, x) reflectance cube whose NDVI is ``ndvi`` (red 0.1, NIR chosen to match)."""
    red = np.full(ndvi.shape, 0.1, dtype="float32")
    nir = red * (1 + ndvi) / (1 - ndvi)
    data = np.stack([red, nir], axis=1).astype("float32")
    t, _, h, w = data.shape
    return xr.DataArray(data, dims=("time", "band", "y", "x"),
                        coords={"time": TIMES[:t], "band": ["B04", "B08"], "y": np.arange(h), "x": np.arange(w)})


def classes(values) -> xr.DataArray:
    values = np.asarray(values, dtype="uint8")
    return xr.DataArray(values, dims=("y", "x"))


def test_median_and_quartiles_per_class_and_step():
    # class 0: four pixels with NDVI 0.1, 0.2, 0.3, 0.4 (+0.1 per month); class 1: 0.8 everywhere
    base = np.array([[0.1, 0.2, 0.8], [0.3, 0.4, 0.8]])
    ndvi = np.stack([base + 0.1 * i * (base < 0.5) for i in range(4)])
    table = phenology(cube(ndvi), classes([[0, 0, 1], [0, 0, 1]]), ["grass", "maize", "wheat"])
    assert list(table.columns) == ["class_id", "class", "time", "median", "q25", "q75", "pixels"]
    assert sorted(set(table["class"])) == ["grass", "maize"]  # wheat has no pixels: left out
    grass = table[table["class_id"] == 0]
    assert list(grass["time"]) == list(TIMES)
    assert grass["median"].to_numpy() == pytest.approx([0.25, 0.35, 0.45, 0.55], abs=1e-5)
    assert grass["q25"].to_numpy() == pytest.approx(np.percentile([0.1, 0.2, 0.3, 0.4], 25) + 0.1 * np.arange(4),
                                                   abs=1e-5)
    assert (grass["pixels"] == 4).all()
    maize = table[table["class_id"] == 1]
    assert maize["median"].to_numpy() == pytest.approx([0.8] * 4, abs=1e-5)
    assert (maize["q75"] - maize["q25"]).to_numpy() == pytest.approx([0, 0, 0, 0], abs=1e-5)


def test_nodata_pixels_and_missing_observations_are_skipped():
    ndvi = np.full((4, 1, 3), 0.5)
    ndvi[:, 0, 2] = -0.9  # under nodata: must not count
    data = cube(ndvi)
    data[1, :, 0, 0] = np.nan  # a cloudy month for one pixel
    table = phenology(data, classes([[1, 1, 255]]), ["a", "b"])
    assert set(table["class_id"]) == {1} and (table["pixels"] == 2).all()
    assert table["median"].to_numpy() == pytest.approx([0.5] * 4, abs=1e-5)


def test_a_step_without_any_observation_is_nan():
    data = cube(np.full((4, 2, 2), 0.6))
    data[2] = np.nan
    table = phenology(data, classes([[0, 0], [0, 0]]), ["a"])
    assert np.isnan(table["median"].iloc[2]) and not np.isnan(table["median"].iloc[3])


def test_only_nodata_gives_an_empty_table():
    table = phenology(cube(np.full((4, 2, 2), 0.6)), classes(np.full((2, 2), 255)), ["a"])
    assert table.empty and "median" in table.columns


def test_refuses_a_map_on_another_grid_or_a_cube_without_nir():
    data = cube(np.full((4, 2, 2), 0.6))
    with pytest.raises(ConfigError, match="same grid"):
        phenology(data, classes(np.zeros((3, 3))), ["a"])
    with pytest.raises(ConfigError, match="B08"):
        phenology(data.sel(band=["B04"]), classes(np.zeros((2, 2))), ["a"])
    with pytest.raises(ConfigError, match="legend has 1"):
        phenology(data, classes(np.full((2, 2), 3)), ["a"])
