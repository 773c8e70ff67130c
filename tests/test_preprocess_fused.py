"""The fused preprocessing (one pass per pixel series) against a plain float64 reference, on real and edge-case data."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pystac
import pytest
import xarray as xr

from cropcore.cube.load import load_cube
from cropcore.cube.preprocess import S2_NODATA, bin_index, plan_chunks, preprocess, preprocess_tensor, time_axis
from cropcore.errors import ConfigError
from cropcore.legend import SCL_INVALID
from cropcore.stac.catalog import search_items

BANDS = ["B02", "B04", "B08"]


def _reference(cube: xr.DataArray, axis: pd.DatetimeIndex, edges: str) -> np.ndarray:
    """Reflectance, SCL mask, median per bin and gap filling in float64 with numpy's own functions, pixel by pixel."""
    has_scl = "SCL" in cube["band"].values
    bands = cube.drop_sel(band="SCL") if has_scl else cube
    dn = bands.values.astype("float64")
    scale, offset, nodata = (np.broadcast_to(xr.broadcast(bands.coords[c], bands.isel(y=0, x=0))[0]
                                             .transpose("time", "band").values, dn.shape[:2])[..., None, None]
                             for c in ("scale", "offset", "nodata"))
    refl = dn * scale + offset
    bad = np.isin(dn, S2_NODATA) | (dn == nodata)
    if has_scl:
        bad |= np.isin(cube.sel(band="SCL").values, SCL_INVALID)[:, None]
    refl[bad] = np.nan
    bins = bin_index(cube["time"].values, axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins
        median = np.stack([np.nanmedian(refl[bins == b], axis=0) if (bins == b).any()
                           else np.full(refl.shape[1:], np.nan) for b in range(len(axis))]).astype("float32")
    days = (axis - axis[0]).days.to_numpy("float64")
    flat = median.reshape(len(axis), -1).astype("float64")
    out = np.full(flat.shape, np.nan)
    for j in range(flat.shape[1]):
        ok = np.flatnonzero(~np.isnan(flat[:, j]))
        if len(ok):
            out[:, j] = np.interp(days, days[ok], flat[ok, j])
            if edges == "nan":
                out[:ok[0], j] = out[ok[-1] + 1:, j] = np.nan
    return out.reshape(median.shape)


def _check(cube: xr.DataArray, axis: pd.DatetimeIndex, edges: str = "nearest") -> np.ndarray:
    """The fused result of ``cube`` (eager and chunked alike) equals the reference within 1e-6; returns it."""
    eager = preprocess(cube, axis=axis, edges=edges)
    lazy = preprocess(cube.chunk({"time": 1, "band": 1, "y": 7, "x": 9}), axis=axis, edges=edges)
    xr.testing.assert_identical(lazy.compute(), eager)
    expected = _reference(cube, axis, edges)
    np.testing.assert_array_equal(np.isnan(eager.values), np.isnan(expected))
    np.testing.assert_allclose(eager.values, expected, rtol=0, atol=1e-6, equal_nan=True)
    return eager.values


def _with_scl(cube: xr.DataArray) -> xr.DataArray:
    """A real cube with an SCL band made from its own blue DNs: cloud (9) above the 70th percentile, else 4."""
    blue = cube.sel(band="B02").values
    scl = np.where(blue > np.percentile(blue[blue > 0], 70), 9, 4).astype(cube.dtype)[:, None]
    extra = xr.DataArray(scl, dims=cube.dims, coords={**{d: cube[d] for d in ("time", "y", "x")}, "band": ["SCL"]})
    ones = np.ones((cube.sizes["time"], 1))
    extra = extra.assign_coords(scale=(("time", "band"), ones), offset=(("time", "band"), 0 * ones),
                                nodata=(("time", "band"), 0 * ones))
    return xr.concat([cube, extra], dim="band")


@pytest.fixture(scope="module")
def real_cubes(stac_api, demo_bbox) -> dict[str, xr.DataArray]:
    """Real Sentinel-2 DNs of the embedded catalog (a corner, computed), with each item's radiometry."""
    searches = {"worldcereal": (demo_bbox, ("2020-11-01", "2021-10-31"), "worldcereal-s2-l2a-monthly"),
                "ftw": ((13.12, 48.28, 13.16, 48.30), ("2021-01-01", "2021-12-31"), "ftw-s2-l2a")}
    out = {}
    for name, (bbox, dates, collection) in searches.items():
        items: list[pystac.Item] = list(search_items(bbox, dates, collections=[collection], catalog=stac_api).items)
        cube = load_cube(items, BANDS).cube
        out[name] = cube.isel(y=slice(0, 24), x=slice(0, 30)).compute()  # enough pixels, few to loop over in numpy
    return out


@pytest.mark.parametrize("name", ["worldcereal", "ftw"])
@pytest.mark.parametrize("freq", ["monthly", "dekadal"])
def test_fused_preprocessing_of_real_scenes_equals_the_float64_reference(real_cubes, name, freq):
    cube = real_cubes[name]
    times = pd.DatetimeIndex(cube["time"].values)
    axis = time_axis(times.min(), freq=freq, end=times.max())
    for c in (cube, _with_scl(cube)):
        for edges in ("nearest", "nan"):
            _check(c, axis, edges)


def _edge_cube() -> tuple[xr.DataArray, pd.DatetimeIndex]:
    """Six dates over five months (March empty) x 2 bands + SCL, 4 x 5 pixels of chosen histories."""
    times = pd.DatetimeIndex(["2021-01-03", "2021-01-20", "2021-02-05", "2021-04-01", "2021-04-11", "2021-05-30"])
    rng = np.random.default_rng(5)
    dn = rng.integers(100, 5000, size=(6, 2, 4, 5)).astype("uint16")
    scl = np.full((6, 1, 4, 5), 4, "uint16")
    scl[:, 0, 0, 0] = 9  # cloudy on every date
    scl[1:, 0, 0, 1] = 8  # a single valid date, the first
    scl[:, 0, 0, 2] = [9, 9, 9, 4, 9, 9]  # one valid date in the middle: both ends filled from it
    scl[:3, 0, 0, 3] = 3  # leading gap (January, February)
    scl[3:, 0, 0, 4] = 10  # trailing gap (April, May)
    dn[:, :, 1, 0] = 0  # no data on every date
    dn[2, :, 1, 1] = 65535  # no data on one date
    dn[:, 1, 1, 2] = 7  # band no-data of B08 on the first three dates (below)
    scl[0, 0, 1, 3] = 0  # SCL no-data
    cube = xr.DataArray(np.concatenate([dn, scl], axis=1), dims=("time", "band", "y", "x"),
                        coords={"time": times, "band": ["B04", "B08", "SCL"], "y": np.arange(4), "x": np.arange(5)})
    nodata = np.full((6, 3), np.nan)
    nodata[:3, 1] = 7
    cube = cube.assign_coords(scale=("time", np.full(6, 1e-4)), offset=("time", [0, 0, -0.1, -0.1, -0.1, -0.1]),
                              nodata=(("time", "band"), nodata))
    return cube, time_axis("2021-01-01", end="2021-05-31")


def test_edge_cases_all_cloud_single_date_nodata_and_gaps_at_both_ends():
    cube, axis = _edge_cube()
    for edges in ("nearest", "nan"):
        out = _check(cube, axis, edges)
        assert np.isnan(out[:, :, 0, 0]).all() and np.isnan(out[:, :, 1, 0]).all()  # no valid observation at all
    out = _check(cube, axis, "nearest")
    dn = cube.values.astype("float64")
    np.testing.assert_allclose(out[:, :, 0, 1], np.repeat(dn[None, 0, :2, 0, 1] * 1e-4, 5, axis=0), atol=1e-6)
    np.testing.assert_allclose(out[:, :, 0, 2], np.repeat(dn[None, 3, :2, 0, 2] * 1e-4 - 0.1, 5, axis=0), atol=1e-6)
    assert not np.isnan(out[:, :, 0, 3:]).any()  # leading and trailing gaps repeat the nearest month
    kept = _check(cube, axis, "nan")
    assert np.isnan(kept[:2, :, 0, 3]).all() and np.isnan(kept[3:, :, 0, 4]).all()


def test_float_cubes_and_nan_digital_numbers():
    """A cube of float DNs with NaN (e.g. resampled) follows the general formula and drops the NaN."""
    cube, axis = _edge_cube()
    cube = cube.astype("float32")
    cube[3, 0, 2, 2] = np.nan
    cube = cube.assign_coords(offset=("time", np.full(6, -0.123)))  # no whole number of DNs
    _check(cube, axis)


@pytest.mark.parametrize("edges", ["nearest", "nan"])
def test_the_torch_path_gives_the_numbers_of_the_cpu_path(real_cubes, edges):
    """What a CUDA device runs, here on CPU tensors: the same numbers, also for a band order of the model's."""
    torch = pytest.importorskip("torch")
    edge, axis = _edge_cube()
    for cube, ax in [(edge, axis), *((_with_scl(c), None) for c in real_cubes.values())]:
        expected = preprocess(cube, axis=ax, edges=edges)
        plan = plan_chunks(cube, axis=ax, edges=edges)
        np.testing.assert_array_equal(preprocess_tensor(torch.from_numpy(cube.values), plan).numpy(), expected.values)
    swapped = plan_chunks(edge, axis=axis, bands=["B08", "B04"])
    np.testing.assert_array_equal(preprocess_tensor(torch.from_numpy(edge.values), swapped).numpy(),
                                  preprocess(edge, axis=axis).sel(band=["B08", "B04"]).values)
    with pytest.raises(ConfigError, match="B11"):
        plan_chunks(edge, bands=["B04", "B11"])


def test_a_reader_preprocessing_dns_on_a_device_reads_the_windows_of_the_preprocessed_cube(real_cubes):
    """WindowReader with a plan (here on the CPU device) == WindowReader over preprocess() of the same DNs."""
    pytest.importorskip("torch")
    from cropcore.cube.normalise import NormStats
    from cropcore.inference.reader import WindowReader

    cube = _with_scl(real_cubes["worldcereal"]).chunk({"time": 1, "band": 1, "y": 10, "x": 12})
    norm = NormStats(("B08", "B02"), (0.3, 0.1), (0.1, 0.0))  # std 0 is taken as 1
    on_host = WindowReader(preprocess(cube).sel(band=["B08", "B02"]), norm=norm)
    on_device = WindowReader(cube, norm=norm, plan=plan_chunks(cube, bands=["B08", "B02"]), device="cpu")
    for ys, xs in [(slice(0, 8), slice(0, 8)), (slice(5, 24), slice(7, 30))]:
        np.testing.assert_array_equal(on_device.read(ys, xs), on_host.read(ys, xs))
    np.testing.assert_array_equal(on_device.valid, on_host.valid)
