"""Strips on a dask.distributed cluster (a real LocalCluster, two worker processes): the same map as a local run."""

import socket
from dataclasses import replace

import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from distributed import LocalCluster

from cropcore.errors import ConfigError
from cropcore.inference import cluster as cluster_module
from cropcore.inference.options import NODATA, InferenceOptions
from cropcore.inference.predict import predict_map
from cropcore.models import build_model, load_checkpoint

LAYERS = ("class", "class_raw", "confidence", "cropland")


@pytest.fixture(scope="module")
def scheduler():
    """Address of a LocalCluster on loopback: 2 worker processes of 1 thread each."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert all(w.startswith("tcp://127.0.0.1:") for w in cluster.scheduler_info["workers"])
        yield cluster.scheduler_address


@pytest.fixture
def one_thread():
    """The workers run the model on one thread each: so does the local run (AgrUNet's float sums depend on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _block(bands: int, block_info=None) -> np.ndarray:
    """Reflectance-like values of one chunk, seeded by where it is: a lazy cube whose graph holds no pixels."""
    (y0, y1), (x0, x1) = block_info[None]["array-location"][2:]
    rng = np.random.default_rng([y0, x0])
    data = rng.uniform(0.0, 0.4, (12, bands, y1 - y0, x1 - x0)).astype("float32")
    data[:, :, max(0, -y0):max(0, 3 - y0), max(0, -x0):max(0, 5 - x0)] = np.nan  # a corner without data
    return data


def lazy_cube(meta, height: int, width: int, chunks: tuple[int, int]) -> xr.DataArray:
    bands = len(meta.bands)
    ys = tuple(min(chunks[0], height - y) for y in range(0, height, chunks[0]))
    xs = tuple(min(chunks[1], width - x) for x in range(0, width, chunks[1]))
    data = da.map_blocks(_block, bands, chunks=((12,), (bands,), ys, xs), dtype="float32",
                         meta=np.empty((0, 0, 0, 0), "float32"))
    return xr.DataArray(data, dims=("time", "band", "y", "x"),
                        coords={"band": list(meta.bands), "y": np.arange(height), "x": np.arange(width)})


def assert_same_map(local: xr.Dataset, remote: xr.Dataset) -> None:
    for name in LAYERS:
        np.testing.assert_array_equal(remote[name].values, local[name].values, err_msg=name)


def test_pixel_model_on_the_cluster_gives_the_local_map(scheduler, one_thread, monkeypatch):
    model, meta = load_checkpoint("tempcnn_worldcereal")  # calibrated: temperature, cropland and uncertain
    cube = lazy_cube(meta, 70, 150, (32, 48))
    options = InferenceOptions(tile=32, overlap=8, strip=48, amp=False)
    local = predict_map(cube, model, meta=meta, options=options)
    monkeypatch.setenv("CROPCORE_DASK_SCHEDULER", scheduler)  # the environment variable picks the cluster too
    remote = predict_map(cube, model, meta=meta, options=options)
    assert remote.attrs["cluster"]["strips"] == 3 and remote.attrs["cluster"]["workers"] == 2
    assert_same_map(local, remote)
    assert (remote["class"].values[:3, :5] == NODATA).all() and (remote["class"].values == 254).any()


def test_patch_model_with_overlap_across_strips_gives_the_local_map(scheduler, one_thread):
    _, meta = load_checkpoint("tempcnn_worldcereal")
    meta = replace(meta, architecture="agrunet", kind="patch", calibration=None)
    torch.manual_seed(0)
    unet = build_model("agrunet", in_channels=len(meta.bands), num_classes=meta.num_classes,
                       widths=(8, 16, 32)).eval()
    cube = lazy_cube(meta, 70, 130, (32, 40))
    options = InferenceOptions(tile=32, overlap=8, strip=40, amp=False)
    local = predict_map(cube, unet, meta=meta, options=options)
    remote = predict_map(cube, unet, meta=meta, options=replace(options, scheduler=scheduler))
    sent = remote.attrs["cluster"]
    assert sent["strips"] == 3
    assert sent["input_bytes"] < cube.nbytes / 20  # graphs travel, not pixels
    assert_same_map(local, remote)


def test_an_unreachable_scheduler_says_how_to_start_one(monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 2)
    model, meta = load_checkpoint("tempcnn_worldcereal")
    cube = lazy_cube(meta, 40, 40, (40, 40))
    with pytest.raises(ConfigError, match=rf"cannot reach the dask scheduler at {address}.*`dask scheduler`"):
        predict_map(cube, model, meta=meta, options=InferenceOptions(scheduler=address))
    with pytest.raises(ConfigError, match="address"):
        InferenceOptions(scheduler="my-cluster")
