"""Pure preprocessing functions: unit tests and hypothesis properties."""

from __future__ import annotations

import warnings

import dask.array as dska
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.ndimage import binary_dilation

from cropcore.cube.indices import add_indices
from cropcore.cube.normalise import NormStats, fit_norm_stats, normalize
from cropcore.cube.preprocess import (
    bin_index,
    composite,
    composite_np,
    dilate,
    fill_gaps,
    fill_gaps_np,
    invalid_scl,
    mask_scl,
    preprocess,
    time_axis,
    to_reflectance,
)
from cropcore.errors import ConfigError, ShapeError
from cropcore.legend import SCL_INVALID

BANDS = ["B03", "B04", "B08", "B11"]


def _cube(values: np.ndarray, times: list[str], bands: list[str] = BANDS) -> xr.DataArray:
    *_, y, x = values.shape
    return xr.DataArray(values, dims=("time", "band", "y", "x"),
                        coords={"time": pd.DatetimeIndex(times), "band": bands, "y": np.arange(y), "x": np.arange(x)})


# --- reflectance ----------------------------------------------------------------------------------------

def _radiometry(cube: xr.DataArray, scale: list[float], offset: list[float], nodata: list[float]) -> xr.DataArray:
    """``cube`` with per-time scale and offset and per-band no-data, as load_cube sets them."""
    return cube.assign_coords(scale=("time", scale), offset=("time", offset), nodata=("band", nodata))


def test_reflectance_is_dn_times_scale_plus_offset_per_time_and_masks_nodata():
    dn = np.array([1500, 0, 65535, 3000], dtype="uint16").reshape(1, 1, 2, 2)
    cube = _cube(np.concatenate([dn, dn]), ["2022-01-01", "2022-02-01"], ["B04"])
    refl = to_reflectance(_radiometry(cube, [1e-4, 1e-4], [0.0, -0.1], [65535.0])).values
    np.testing.assert_allclose(refl[0, 0], [[0.15, np.nan], [np.nan, 0.30]], rtol=1e-6)
    np.testing.assert_allclose(refl[1, 0], [[0.05, np.nan], [np.nan, 0.20]], rtol=1e-6)
    assert refl.dtype == np.float32


@pytest.mark.parametrize("chunks", [None, {"y": 100}])
def test_reflectance_of_every_digital_number_is_the_float64_formula_rounded_once(chunks):
    dn = np.arange(2**16, dtype="uint16").reshape(1, 1, 256, 256)
    cube = _cube(np.concatenate([dn, dn]), ["2022-01-01", "2022-02-01"], ["B04"])
    cube = _radiometry(cube, [1e-4, 1e-4], [0.0, -0.1], [65535.0])  # -0.1 at scale 1e-4: 1000 DN
    refl = to_reflectance(cube.chunk(chunks) if chunks else cube).values
    offset = np.array([0, 1000]).reshape(2, 1, 1, 1)
    expected = ((dn.astype("float64") - offset) * np.float64(np.float32(1e-4))).astype("float32")
    expected[:, :, 0, 0] = expected[:, :, -1, -1] = np.nan  # DN 0 and 65535
    np.testing.assert_array_equal(refl, expected)


def test_reflectance_per_time_and_band_with_any_scale_and_missing_bands():
    """Scale and offset per (time, band); an offset that is no whole DN; NaN scale: no item had the band."""
    dn = np.full((2, 2, 1, 3), 12000, dtype="uint16")
    cube = _cube(dn, ["2022-01-01", "2022-02-01"], ["B04", "B08"]).assign_coords(
        scale=(("time", "band"), [[2.75e-5, 1e-4], [1e-4, np.nan]]),
        offset=(("time", "band"), [[-0.2, -0.1], [0.0, np.nan]]),
        nodata=(("time", "band"), [[0.0, 0.0], [np.nan, 12000.0]]))
    refl = to_reflectance(cube.chunk({"time": 1})).values
    np.testing.assert_allclose(refl[0, 0], 12000 * 2.75e-5 - 0.2, rtol=1e-6)
    np.testing.assert_allclose(refl[0, 1], 1.1, rtol=1e-6)
    np.testing.assert_allclose(refl[1, 0], 1.2, rtol=1e-6)
    assert np.isnan(refl[1, 1]).all()


def test_reflectance_needs_the_cubes_scale_and_offset():
    cube = _cube(np.ones((1, 1, 2, 2), "uint16"), ["2022-01-01"], ["B04"])
    with pytest.raises(ConfigError, match="scale or offset"):
        to_reflectance(cube)


# --- masks ----------------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(mask=arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))), pixels=st.integers(0, 4))
def test_dilate_matches_a_square_binary_dilation(mask, pixels):
    expected = binary_dilation(mask, np.ones((2 * pixels + 1,) * 2, bool)) if pixels else mask
    np.testing.assert_array_equal(dilate(mask, pixels), expected)


@settings(max_examples=40, deadline=None)
@given(scl=arrays("uint8", (3, 9, 10), elements=st.integers(0, 11)), pixels=st.integers(0, 3),
       chunk=st.integers(2, 6))
def test_scl_mask_sets_invalid_pixels_to_nan_in_every_band(scl, pixels, chunk):
    rng = np.random.default_rng(0)
    values = rng.uniform(0.01, 0.5, size=(3, 2, 9, 10)).astype("float32")
    data = np.concatenate([values, scl[:, None].astype("float32")], axis=1)
    cube = _cube(data, ["2022-01-01", "2022-01-06", "2022-01-11"], ["B04", "B08", "SCL"])
    expected_bad = dilate(np.isin(scl, SCL_INVALID), pixels)
    for c in (cube, cube.chunk({"y": chunk, "x": chunk})):  # lazy result must not depend on chunking
        out = mask_scl(c, dilation=pixels).values
        assert out.shape == (3, 2, 9, 10)
        for b in range(2):
            assert np.isnan(out[:, b][expected_bad]).all()
            np.testing.assert_array_equal(out[:, b][~expected_bad], values[:, b][~expected_bad])


def test_scl_mask_needs_an_scl_band():
    with pytest.raises(ConfigError, match="SCL"):
        mask_scl(_cube(np.zeros((1, 4, 2, 2)), ["2022-01-01"]))


def test_invalid_scl_treats_missing_as_invalid():
    scl = xr.DataArray(np.array([[4.0, np.nan]]), dims=("y", "x"))
    assert invalid_scl(scl).values.tolist() == [[False, True]]


# --- time axis and compositing ---------------------------------------------------------------------------

def test_time_axes_monthly_dekadal_and_n_day():
    assert list(time_axis("2021-01-15", end="2021-03-02").strftime("%m-%d")) == ["01-01", "02-01", "03-01"]
    dek = time_axis("2021-01-15", freq="dekadal", periods=5)
    assert list(dek.strftime("%m-%d")) == ["01-11", "01-21", "02-01", "02-11", "02-21"]
    assert list(time_axis("2021-01-01", freq="5D", periods=3).day) == [1, 6, 11]
    assert bin_index(pd.DatetimeIndex(["2021-01-31", "2021-02-10", "2021-03-01"]), dek, freq="dekadal").tolist() \
        == [1, 2, -1]
    with pytest.raises(ConfigError, match="monthly"):
        time_axis("2021-01-01", freq="weekly", periods=2)


obs = arrays("float32", st.tuples(st.integers(1, 10), st.integers(1, 4)),
             elements=st.one_of(st.just(np.nan), st.floats(0, 1, width=32)))


@settings(max_examples=100, deadline=None)
@given(values=obs, data=st.data())
def test_composite_is_the_median_and_count_of_valid_observations(values, data):
    nbins = data.draw(st.integers(1, 4))
    bins = np.array(data.draw(st.lists(st.integers(-1, nbins - 1), min_size=len(values), max_size=len(values))))
    median, count = composite_np(values, bins, nbins)
    for b in range(nbins):
        for j in range(values.shape[1]):
            valid = values[bins == b, j]
            valid = valid[~np.isnan(valid)]
            assert count[b, j] == len(valid)
            if len(valid):
                assert median[b, j] == pytest.approx(np.median(valid), abs=1e-6)
            else:
                assert np.isnan(median[b, j])
    # the order of observations does not matter
    perm = np.random.default_rng(0).permutation(len(values))
    median2, count2 = composite_np(values[perm], bins[perm], nbins)
    np.testing.assert_array_equal(count, count2)
    np.testing.assert_allclose(median, median2, atol=1e-6)


def _nanmedian_per_bin(values: np.ndarray, bins: np.ndarray, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: np.nanmedian in float64 of each bin's observations, and their count."""
    median = np.full((nbins, *values.shape[1:]), np.nan, dtype="float32")
    count = np.zeros(median.shape, dtype="int16")
    for b in range(nbins):
        sel = values[bins == b].astype("float64")
        count[b] = (~np.isnan(sel)).sum(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
            median[b] = np.nanmedian(sel, axis=0) if len(sel) else np.nan
    return median, count


@pytest.mark.parametrize("nan_share", [0.0, 0.3, 0.9])
def test_composite_equals_nanmedian_for_bins_of_0_to_30_observations(nan_share):
    rng = np.random.default_rng(7)
    sizes = [0, 1, 2, 3, 4, 5, 30]  # bin b holds sizes[b] observations; 30 takes the np.sort path
    bins = rng.permutation(np.concatenate([np.repeat(np.arange(len(sizes)), sizes), [-1, -1]]))
    values = rng.uniform(0, 1, size=(len(bins), 3, 40)).astype("float32")
    values[:, :, :4] = np.round(values[:, :, :4], 1)  # ties
    values[rng.random(values.shape) < nan_share] = np.nan
    values[:, 0, 0] = np.nan  # a series without any observation
    values[bins == 2, 1, 1] = np.nan  # a pair with one observation: 2 x 1 valid
    values[bins == 2, 1, 2] = [np.nan, 0.25]
    expected = _nanmedian_per_bin(values, bins, len(sizes))
    for layout in (values, np.moveaxis(np.moveaxis(values, 0, -1).copy(), -1, 0)):  # time-last, as from dask
        median, count = composite_np(layout, bins, len(sizes))
        np.testing.assert_array_equal(count, expected[1])
        np.testing.assert_array_equal(median, expected[0])
    assert (count[0] == 0).all() and np.isnan(median[0]).all()


def test_composite_of_a_lazy_cube_equals_the_eager_one():
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1, size=(6, 4, 8, 8)).astype("float32")
    values[rng.random(values.shape) < 0.3] = np.nan
    times = ["2021-01-03", "2021-01-20", "2021-02-05", "2021-04-01", "2021-04-11", "2021-04-30"]
    cube = _cube(values, times)
    eager = composite(cube)
    lazy = composite(cube.chunk({"time": 1, "y": 4, "x": 4}))
    assert isinstance(lazy.median.data, dska.Array)
    assert list(eager.median["time"].dt.month.values) == [1, 2, 3, 4]
    np.testing.assert_array_equal(lazy.count.values, eager.count.values)
    np.testing.assert_allclose(lazy.median.values, eager.median.values)
    assert (eager.count.values[2] == 0).all() and np.isnan(eager.median.values[2]).all()  # March is empty


# --- gap filling ----------------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(slope=st.floats(-1, 1), offset=st.floats(-1, 1), data=st.data())
def test_gap_filling_recovers_a_line_and_keeps_valid_values(slope, offset, data):
    n = data.draw(st.integers(2, 15))
    pos = np.cumsum(data.draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))).astype(float)
    line = (offset + slope * pos / 100).astype("float64")
    holes = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    series = np.where(holes, np.nan, line)
    filled = fill_gaps_np(series[:, None], pos)[:, 0]
    valid = np.flatnonzero(~holes)
    np.testing.assert_array_equal(filled[valid], series[valid])
    if len(valid):
        inside = np.arange(valid[0], valid[-1] + 1)
        np.testing.assert_allclose(filled[inside], line[inside], atol=1e-9)
        assert filled[: valid[0]].tolist() == [series[valid[0]]] * valid[0]  # nearest edges
        assert filled[valid[-1] + 1:].tolist() == [series[valid[-1]]] * (n - 1 - valid[-1])
    else:
        assert np.isnan(filled).all()
    kept = fill_gaps_np(series[:, None], pos, edges="nan")[:, 0]
    if len(valid):
        assert np.isnan(kept[: valid[0]]).all() and np.isnan(kept[valid[-1] + 1:]).all()


def _interp_per_series(values: np.ndarray, positions: np.ndarray, edges: str) -> np.ndarray:
    """Reference: np.interp along axis 0 of each series (NaN outside its valid range for edges='nan')."""
    flat = values.reshape(len(values), -1).astype("float64")
    out = np.full(flat.shape, np.nan)
    for j in range(flat.shape[1]):
        ok = ~np.isnan(flat[:, j])
        if ok.any():
            out[:, j] = np.interp(positions, positions[ok], flat[ok, j])
            if edges == "nan":
                first, last = np.flatnonzero(ok)[[0, -1]]
                out[:first, j] = out[last + 1:, j] = np.nan
    return out.reshape(values.shape)


@pytest.mark.parametrize("edges", ["nearest", "nan"])
@pytest.mark.parametrize("nan_share", [0.2, 0.6, 0.95])
def test_fill_gaps_equals_np_interp_per_series(edges, nan_share):
    rng = np.random.default_rng(3)
    positions = np.cumsum(rng.integers(1, 40, size=12)).astype("float64")
    values = rng.uniform(-0.1, 1, size=(12, 2, 60)).astype("float32")
    values[rng.random(values.shape) < nan_share] = np.nan
    values[:, 0, 0] = np.nan  # no valid value at all
    values[:, 0, 1] = np.where(np.arange(12) == 5, 0.5, np.nan)  # a single one
    values[[0, 11], 0, 2:5] = np.nan  # gaps at both ends
    expected = _interp_per_series(values, positions, edges)
    for layout in (values, np.moveaxis(np.moveaxis(values, 0, -1).copy(), -1, 0)):  # time-last, as from dask
        filled = fill_gaps_np(layout, positions, edges=edges)
        assert filled.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(filled), np.isnan(expected))
        ok = ~np.isnan(expected)  # the same in float64, up to rounding the last bit to float32
        np.testing.assert_array_max_ulp(filled[ok], expected[ok].astype("float32"), maxulp=1)
        np.testing.assert_array_equal(filled[~np.isnan(values)], values[~np.isnan(values)])
    filled64 = fill_gaps_np(values.astype("float64"), positions, edges=edges)
    assert filled64.dtype == np.float64
    np.testing.assert_allclose(filled64, expected, rtol=1e-12, atol=1e-15)
    assert fill_gaps_np(np.array([[1], [0], [3]], "int16"), np.array([0.0, 1, 2])).dtype == np.float32


def test_fill_gaps_uses_dates_and_works_lazily():
    values = np.array([0.0, np.nan, np.nan, 0.9], dtype="float32").reshape(4, 1, 1, 1)
    cube = _cube(values, ["2021-01-01", "2021-01-11", "2021-01-31", "2021-02-10"], ["B04"])
    expected = [0.0, 0.225, 0.675, 0.9]  # 10, 30 of 40 days
    np.testing.assert_allclose(fill_gaps(cube).values.ravel(), expected, rtol=1e-6)
    np.testing.assert_allclose(fill_gaps(cube.chunk({"time": 1})).values.ravel(), expected, rtol=1e-6)


# --- indices and normalisation --------------------------------------------------------------------------

def test_indices_are_normalised_differences():
    values = np.array([0.1, 0.1, 0.5, 0.3], dtype="float32").reshape(1, 4, 1, 1)
    cube = add_indices(_cube(values, ["2021-06-01"]), ["NDVI", "NDWI", "NDMI"])
    assert list(cube["band"].values) == [*BANDS, "NDVI", "NDWI", "NDMI"]
    np.testing.assert_allclose(cube.sel(band=["NDVI", "NDWI", "NDMI"]).values.ravel(),
                               [0.4 / 0.6, -0.4 / 0.6, 0.2 / 0.8], rtol=1e-6)
    zero = add_indices(_cube(np.zeros((1, 4, 1, 1), "float32"), ["2021-06-01"]))
    assert np.isnan(zero.sel(band="NDVI").values).all()
    with pytest.raises(ConfigError, match="NDVI"):
        add_indices(cube, ["EVI9"])


@settings(max_examples=30, deadline=None)
@given(arrays("float32", (3, 2, 4, 4), elements=st.floats(-10, 10, width=32)))
def test_normalisation_statistics_round_trip_through_json(values):
    cube = _cube(values, ["2021-01-01", "2021-02-01", "2021-03-01"], ["B04", "B08"])
    stats = fit_norm_stats(cube)
    again = NormStats.from_json(stats.to_json())
    assert again == stats
    out = normalize(cube, again)
    for b in range(2):
        if stats.std[b] > 1e-3:
            assert float(out.isel(band=b).mean()) == pytest.approx(0, abs=1e-3)
            assert float(out.isel(band=b).std()) == pytest.approx(1, abs=1e-2)
    with pytest.raises(ShapeError, match="B11"):
        normalize(cube, NormStats(("B04", "B11"), (0.0, 0.0), (1.0, 1.0)))


def test_norm_stats_save_and_load(tmp_path):
    stats = NormStats(("B04",), (0.1,), (0.05,))
    stats.save(tmp_path / "norm.json")
    assert NormStats.load(tmp_path / "norm.json") == stats


# --- pipeline -------------------------------------------------------------------------------------------

def test_pipeline_masks_composites_and_fills():
    times = ["2021-03-05", "2021-03-20", "2021-05-10"]
    dn = np.full((3, 2, 2, 2), 2000, dtype="uint16")
    dn[1] = 3000
    scl = np.full((3, 1, 2, 2), 4, dtype="uint16")
    scl[1, 0, 0, 0] = 9  # cloud on the second date at one pixel
    cube = _cube(np.concatenate([dn, scl], axis=1), times, ["B04", "B08", "SCL"]).chunk({"time": 1})
    cube = cube.assign_coords(scale=("time", [1e-4] * 3), offset=("time", [0.0, 0.0, -0.1]))
    out = preprocess(cube, freq="monthly")
    assert out.dims == ("time", "band", "y", "x") and list(out["band"].values) == ["B04", "B08"]
    values = out.values
    assert list(out["time"].dt.month.values) == [3, 4, 5]
    np.testing.assert_allclose(values[0, :, 0, 0], 0.2)  # cloudy observation dropped
    np.testing.assert_allclose(values[0, :, 1, 1], 0.25)  # median of 0.2 and 0.3
    np.testing.assert_allclose(values[2], 0.1)  # the -0.1 offset of the third date applied
    assert not np.isnan(values).any()  # April filled from March and May
