"""Tiled inference: seams, workers, devices, precision, OOM fallback."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import xarray as xr

from cropcore.errors import ConfigError, InferenceError
from cropcore.inference.devices import Runner, autocast_dtype, cpu_has_native_bf16, resolve_devices
from cropcore.inference.options import NODATA, InferenceOptions
from cropcore.inference.predict import predict_map
from cropcore.inference.reader import WindowReader
from cropcore.models import build_model, load_checkpoint

TILED = InferenceOptions(tile=32, overlap=8, amp=False)
STRIPS = InferenceOptions(tile=32, overlap=8, strip=40, amp=False)


@pytest.fixture(scope="module")
def tempcnn():
    """The shipped weights without their calibration: these tests are about tiling, blending and workers
    (calibration has its own tests)."""
    model, meta = load_checkpoint("tempcnn_worldcereal")
    return model, replace(meta, calibration=None)


def patch_meta(meta):
    """The metadata of ``meta`` for a patch model (AgrUNet) with the same bands, statistics and legend."""
    return replace(meta, architecture="agrunet", kind="patch")


def random_cube(meta, height=70, width=90, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.uniform(0.0, 0.4, (12, len(meta.bands), height, width)).astype("float32")
    data[:, :, :3, :5] = np.nan  # a corner without data
    return xr.DataArray(data, dims=("time", "band", "y", "x"),
                        coords={"band": list(meta.bands), "y": np.arange(height), "x": np.arange(width)})


def test_pixel_model_gives_the_same_map_tiled_and_untiled(tempcnn):
    model, meta = tempcnn
    cube = random_cube(meta)
    tiled = predict_map(cube, model, meta=meta, options=TILED, probabilities=True)
    whole = predict_map(cube, model, meta=meta, options=InferenceOptions(tile=128, overlap=0, amp=False),
                        probabilities=True)
    strips = predict_map(cube, model, meta=meta, options=STRIPS, probabilities=True)
    for out in (tiled, strips):
        np.testing.assert_array_equal(out["class"].values, whole["class"].values)
        np.testing.assert_allclose(out["probability"].values, whole["probability"].values, atol=1e-5)
    assert (tiled["class"].values[:3, :5] == NODATA).all()
    assert np.isnan(tiled["confidence"].values[:3, :5]).all()
    assert tiled["class"].values[3:].max() < meta.num_classes


def test_probabilities_are_consistent(tempcnn):
    model, meta = tempcnn
    out = predict_map(random_cube(meta, 40, 40), model, meta=meta, options=InferenceOptions(tile=32, overlap=8),
                      probabilities=True)
    p = out["probability"].values[:, 5:, 5:]
    np.testing.assert_allclose(p.sum(0), 1, atol=1e-4)
    np.testing.assert_array_equal(p.argmax(0), out["class"].values[5:, 5:])
    np.testing.assert_allclose(p.max(0), out["confidence"].values[5:, 5:], atol=1e-6)


@pytest.mark.slow
def test_two_cpu_workers_match_one(tempcnn):
    model, meta = tempcnn
    cube = random_cube(meta, 100, 100)
    one = predict_map(cube, model, meta=meta, options=InferenceOptions(tile=32, overlap=8, batch_size=2, devices="cpu"))
    two = predict_map(cube, model, meta=meta,
                      options=InferenceOptions(tile=32, overlap=8, batch_size=2, devices="cpu:2"))
    np.testing.assert_array_equal(one["class"].values, two["class"].values)
    np.testing.assert_array_equal(one["confidence"].values, two["confidence"].values)


def test_patch_model_on_a_raster_smaller_than_its_size_multiple(tempcnn):
    _, meta = tempcnn
    unet = build_model("agrunet", in_channels=len(meta.bands), num_classes=meta.num_classes,
                       widths=(8, 16, 32)).eval()
    out = predict_map(random_cube(meta, 37, 45), unet, meta=patch_meta(meta),
                      options=InferenceOptions(tile=32, overlap=8, amp="bf16"))
    assert out["class"].shape == (37, 45)


def test_oom_halves_the_batch_and_completes(tempcnn, monkeypatch):
    """A CUDA OOM cannot be caused on a CPU machine: inject it for batches of more than one tile."""
    model, _ = tempcnn
    runner = Runner(model, "cpu", amp=False, pixel=True)
    real = runner._forward
    sizes = []

    def flaky(x, latlon=None):
        sizes.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(x, latlon)

    monkeypatch.setattr(runner, "_forward", flaky)
    batch = np.random.default_rng(0).normal(size=(4, 12, 9, 8, 8)).astype("float32")
    logits = runner.logits(batch)
    assert logits.shape == (4, 6, 8, 8) and sizes == [4, 2, 1, 1, 2, 1, 1]
    monkeypatch.setattr(runner, "_forward", lambda x, latlon: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("x")))
    with pytest.raises(InferenceError, match="smaller tile"):
        runner.logits(batch[:1])


def test_devices_and_precision(monkeypatch):
    assert resolve_devices("cpu:3") == ["cpu"] * 3
    monkeypatch.setenv("CROPCORE_DEVICES", "cpu:2")
    assert resolve_devices("auto") == ["cpu", "cpu"]
    with pytest.raises(ConfigError, match="not visible"):
        resolve_devices("cuda:7")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_devices("tpu")
    assert autocast_dtype("cpu", True) is (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert autocast_dtype("cpu", "bf16") is torch.bfloat16  # asked for by name: used as it is
    assert autocast_dtype("cpu", "fp32") is None
    with pytest.raises(ConfigError):
        autocast_dtype("cpu", "int8")


def test_missing_bands_are_refused(tempcnn):
    model, meta = tempcnn
    cube = random_cube(meta).sel(band=list(meta.bands[:5]))
    with pytest.raises(ConfigError, match="lacks bands"):
        predict_map(cube, model, meta=meta)


@pytest.mark.parametrize("strip", [None, 30, 60])
def test_window_reader_computes_each_chunk_once_and_matches_numpy(strip):
    import dask.array as da

    from cropcore.inference.tiling import Blender

    rng = np.random.default_rng(1)
    values = rng.normal(size=(3, 2, 90, 130)).astype("float32")
    calls = []

    def count(block, block_info=None):
        calls.append(block_info[0]["chunk-location"])
        return block

    lazy = da.from_array(values, chunks=(3, 2, 25, 30)).map_blocks(count, dtype="float32")
    cube = xr.DataArray(lazy, dims=("time", "band", "y", "x"))
    reader = WindowReader(cube, halo=8)  # no normalisation: values as they are
    blender = Blender(1, 90, 130, tile=24, overlap=8, strip=strip, emit=lambda r, c, b: None)
    peak = 0
    for t in blender.tiles:
        reader.release(t.row, blender.strip_start(t))
        np.testing.assert_array_equal(reader.read(*t.slices), values[(slice(None), slice(None), *t.slices)])
        peak = max(peak, len(reader.cache))
    if strip == 30:  # strips match the chunks: the 2 chunk rows under a tile, of one chunk column (two in
        assert peak <= 4  # the last strip, widened to a whole tile)
    assert len(calls) == len(set(calls))  # no chunk computed twice
    if strip is not None:
        assert len(calls) == 4 * 5  # ... and every chunk once (strips wider than a chunk hold several)


def test_geotiff_sink_gives_the_same_map_as_memory(tempcnn, tmp_path):
    # a context model (every output pixel depends on its neighbours) in column strips: the lazy cube read chunk
    # by chunk (strips re-use the kept columns of the previous strip) and written block by block to GeoTIFFs
    # gives the map of the in-memory cube
    import rioxarray  # noqa: F401

    from cropcore.inference.sinks import GeoTiffSink

    _, meta = tempcnn
    torch.manual_seed(0)
    model = build_model("agrunet", in_channels=len(meta.bands), num_classes=meta.num_classes,
                        widths=(8, 16, 32)).eval()
    cube = random_cube(meta).rio.write_crs("EPSG:32631")
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    cube = cube.assign_coords(y=5612115.0 - 10 * np.arange(ny), x=664005.0 + 10 * np.arange(nx))
    memory = predict_map(cube, model, meta=patch_meta(meta), options=STRIPS)
    sink = GeoTiffSink(tmp_path, crs=cube.rio.crs, transform=cube.rio.transform(), height=70, width=90)
    lazy = cube.chunk({"y": 24, "x": 40})
    disk = predict_map(lazy, model, meta=patch_meta(meta), options=STRIPS, sink=sink)
    np.testing.assert_array_equal(disk["class"].values, memory["class"].values)
    np.testing.assert_allclose(disk["confidence"].values, memory["confidence"].values, equal_nan=True)
    assert disk["class"].rio.transform() == cube.rio.transform()
    with pytest.raises(ConfigError, match="sink"):
        predict_map(cube, model, meta=meta, probabilities=True, sink=sink)
