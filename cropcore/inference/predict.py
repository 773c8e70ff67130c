"""Tiled, mixed-precision inference over a datacube on every visible device: :func:`predict_map`.

The cube is cut into overlapping tiles laid in column strips (:mod:`cropcore.inference.tiling`), read lazily a
batch at a time (:mod:`cropcore.inference.reader`; on GPUs a background thread reads ahead while the model
runs), normalised with the model's statistics and run under autocast on one worker per device
(:mod:`cropcore.inference.devices`: in-process for a single device, worker processes otherwise); the logits of
overlapping tiles are blended with smooth weights, calibrated and turned into map layers
(:mod:`cropcore.inference.calibrate`: class, confidence, cropland, "uncertain"), and only those are kept, in
memory or in a sink (:mod:`cropcore.inference.sinks`). Given a dask scheduler address, the strips run on that
cluster's workers instead (:mod:`cropcore.inference.cluster`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
import xarray as xr
from torch import nn

from cropcore.cube.normalise import NormStats
from cropcore.cube.preprocess import ChunkPlan
from cropcore.errors import ConfigError
from cropcore.inference.calibrate import Decision
from cropcore.inference.devices import Runner, WorkerPool, resolve_devices
from cropcore.inference.location import Locator
from cropcore.inference.options import InferenceOptions
from cropcore.inference.reader import WindowReader, read_batches
from cropcore.inference.sinks import ArraySink, MapSink
from cropcore.inference.tiling import Blender, Tile
from cropcore.models.meta import ModelMeta
from cropcore.models.registry import uses_location
from cropcore.progress import Progress, silent


def plan_batches(tiles: list[Tile], batch_size: int, strip_of: Callable[[Tile], int] = lambda t: 0) -> list[list[Tile]]:
    """Consecutive tiles of equal size in the same strip (``strip_of``: its first column), ``batch_size`` at most per
    batch. A batch never spans two strips, so a cluster worker running one strip runs the same batches."""
    out: list[list[Tile]] = []
    for t in tiles:
        last = out[-1][0] if out else None
        if (last is not None and len(out[-1]) < batch_size and (last.height, last.width) == (t.height, t.width)
                and strip_of(last) == strip_of(t)):
            out[-1].append(t)
        else:
            out.append([t])
    return out


def class_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated class probabilities of a block of blended logits (K, h, w).

    torch's softmax can round a pixel differently depending on where it lies in the block, so blocks the cluster
    path finishes have the shape and place of the blocks of a local run (:mod:`cropcore.inference.cluster`).
    """
    t = torch.from_numpy(logits)
    return torch.softmax(t if temperature == 1 else t / temperature, dim=0).numpy()


def predict_map(
    cube: xr.DataArray,
    model: nn.Module,
    *,
    meta: ModelMeta,
    options: InferenceOptions | None = None,
    probabilities: bool = False,
    sink: MapSink | None = None,
    progress: Progress | None = None,
    plan: ChunkPlan | None = None,
    skip: np.ndarray | None = None,
) -> xr.Dataset:
    """Crop map of a preprocessed ``(time, band, y, x)`` reflectance cube on the model's time axis.

    With ``plan`` (:func:`~cropcore.cube.preprocess.plan_chunks` for the model's bands and season), ``cube`` holds
    the loaded DNs instead (SCL included): each chunk is decoded on the CPU and composited, gap-filled and
    normalised on the first inference device (:class:`~cropcore.inference.reader.WindowReader`).

    ``meta`` is the checkpoint metadata (bands in order, normalisation, legend, calibration, pixel or patch
    model); ``options`` the tiling, batching, devices, precision and minimum confidence (default
    :class:`InferenceOptions`). Returns an ``xarray.Dataset`` on the cube's grid with ``class`` (uint8;
    :data:`NODATA` where the cube holds no value at all, :data:`UNCERTAIN` below the minimum confidence),
    ``class_raw`` (the class before that), ``confidence`` (float32, calibrated probability of the class; NaN
    without data), ``cropland`` (percent, uint8, 255 without data; models with crop classes) and, with
    ``probabilities=True``, ``probability`` (class, y, x; calibrated). See
    :class:`~cropcore.inference.calibrate.Decision`. The map is kept in memory unless ``sink`` (e.g. a
    :class:`~cropcore.inference.sinks.GeoTiffSink`) takes the finished blocks as they come. Models that take
    location get each pixel centre's latitude and longitude (the cube needs a CRS).

    Tiles are read in column strips ``options.strip`` pixels wide, top to bottom inside each strip; with a dask
    cube chunked by :func:`~cropcore.inference.options.cube_chunks`, input memory then stays about two chunk
    rows of one strip, whatever the AOI's size. Pixel classifiers (TempCNN) ignore ``overlap``: their output
    does not depend on neighbours, so overlapping tiles would only repeat work. With a scheduler address
    (:meth:`InferenceOptions.cluster_address`) the strips run as tasks on that dask cluster's workers
    (:func:`cropcore.inference.cluster.run_on_cluster`), giving the same map; ``attrs["cluster"]`` then says what
    was sent to them.

    ``skip`` (y, x; True = not to be mapped, e.g. :mod:`cropcore.patches.gate`): its pixels are :data:`NODATA`, and
    the model tiles lying wholly in it are neither read nor run; every other pixel is as without ``skip``.
    ``attrs["timings"]["skipped_tiles"]`` counts the tiles left out.
    """
    opts = options or InferenceOptions()
    bands = list(meta.bands)
    have = [str(b) for b in cube["band"].values]
    if plan is not None:
        planned = [have[i] for i in plan.bands]
        if planned != bands:
            raise ConfigError(f"the preprocessing plan makes bands {planned}, the model needs {bands}")
    elif have != bands:
        missing = [b for b in bands if b not in have]
        if missing:
            raise ConfigError(f"the cube lacks bands {missing} that the model needs (it has {have})")
        cube = cube.sel(band=bands)
    _, _, height, width = cube.shape
    keep = probabilities
    if sink is None:
        sink = ArraySink(height, width, meta.num_classes, probabilities=keep)
    elif keep:
        raise ConfigError("probabilities=True keeps every class in memory: it cannot be combined with a sink")
    address = opts.cluster_address()
    attrs: dict = {"class_names": meta.class_names}
    if address is None:
        attrs["timings"] = _run_local(cube, model, meta, opts, sink, keep, progress or silent, plan, skip)
    elif skip is not None:
        raise ConfigError("skipping tiles runs on this machine only: run without a dask scheduler address")
    elif plan is not None:
        raise ConfigError("preprocessing on the device runs on this machine only: the cluster's workers take "
                          "preprocessed reflectance (preprocess_on='cpu')")
    else:  # imported here: local runs need no dask.distributed
        from cropcore.inference.cluster import run_on_cluster

        attrs["timings"], attrs["cluster"] = run_on_cluster(address, cube, model, meta=meta, options=opts, sink=sink,
                                                            keep=keep, progress=progress or silent)
    out = sink.dataset({"y": cube["y"], "x": cube["x"]})
    if "spatial_ref" in cube.coords:
        out = out.assign_coords(spatial_ref=cube["spatial_ref"])
    out.attrs.update(attrs)
    return out


def _run_local(
    cube: xr.DataArray, model: nn.Module, meta: ModelMeta, opts: InferenceOptions, sink: MapSink, keep: bool,
    report: Progress, plan: ChunkPlan | None = None, skip: np.ndarray | None = None,
) -> dict[str, float]:
    """Run every tile on this machine's devices into ``sink``; return the timings in seconds: total, and for one
    device the model and the wait for input. With ``plan``, chunks are preprocessed on the first device; tiles
    wholly in ``skip`` are not run (see :func:`predict_map`)."""
    _, _, height, width = cube.shape
    device_list = resolve_devices(opts.devices)
    overlap = 0 if meta.is_pixel else opts.overlap
    decision = Decision.for_model(meta, opts.min_confidence)
    located = uses_location(meta.architecture)
    locator = Locator(cube) if located else None
    window_reader = WindowReader(cube, halo=overlap, norm=NormStats.from_meta(meta), plan=plan,
                                 device=device_list[0])

    def emit(row0: int, col0: int, block: np.ndarray) -> None:  # blended logits of a finished block
        valid = window_reader.valid[row0:row0 + block.shape[1], col0:col0 + block.shape[2]]
        if skip is not None:
            valid = valid & ~skip[row0:row0 + block.shape[1], col0:col0 + block.shape[2]]
        sink.write(row0, col0, decision.decide(class_probabilities(block, decision.temperature), valid, keep=keep))

    def latlon(batch: list[Tile]) -> np.ndarray | None:
        return None if locator is None else locator.batch(batch)

    blender = Blender(meta.num_classes, height, width, tile=opts.tile, overlap=overlap, strip=opts.strip, emit=emit,
                      skip=skip)
    batches = plan_batches(blender.run_tiles, opts.batch_size, blender.strip_start)
    skipped = f", {len(blender.skipped)} skipped" if skip is not None else ""
    report(0.0, f"{len(blender.run_tiles)} tiles on {', '.join(device_list)}{skipped}")
    blender.fill_skipped()
    # a single CPU worker reads between model calls: reading (dask threads) and the model (torch threads) running
    # at once on the same cores slowed the model down by as much as the overlap saved (benchmarks/README.md)
    ahead = 0 if device_list == ["cpu"] else 2 * len(device_list)
    reader = read_batches(window_reader, batches, blender, ahead=ahead)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    if len(device_list) == 1:
        runner = Runner(model, device_list[0], opts.amp, pixel=meta.is_pixel, location=located)
        for i, batch in enumerate(batches):
            t0 = time.perf_counter()
            data = next(reader)
            timings["read_wait"] = timings.get("read_wait", 0.0) + time.perf_counter() - t0
            for t, logits in zip(batch, runner.logits(data, latlon(batch)), strict=True):
                blender.add(t, logits)
            report((i + 1) / len(batches), f"batch {i + 1}/{len(batches)}")
        timings["model"] = runner.busy
        reader.close()
    else:
        pool = WorkerPool(model.cpu(), device_list, opts.amp, pixel=meta.is_pixel, location=located)
        _run_pool(pool, batches, ((data, latlon(b)) for data, b in zip(reader, batches, strict=True)), blender,
                  report)
    timings["total"] = time.perf_counter() - t_start
    if skip is not None:
        timings["skipped_tiles"] = len(blender.skipped)
    return timings


def _run_pool(
    pool: WorkerPool, batches: list[list[Tile]], jobs: Iterator[tuple[np.ndarray, np.ndarray | None]],
    blender: Blender, report: Progress,
) -> None:
    """Share batches out to the pool's workers; blend results in plan order as they come back."""
    waiting: dict[int, np.ndarray] = {}
    state = {"in_flight": 0, "done": 0, "next": 0}

    def collect() -> None:
        index, logits = pool.result()
        waiting[index] = logits
        state["in_flight"] -= 1
        state["done"] += 1
        state["next"] = _blend_ready(waiting, state["next"], batches, blender)
        report(state["done"] / len(batches), f"batch {state['done']}/{len(batches)}")

    try:
        for index, (data, latlon) in enumerate(jobs):
            pool.submit(index, data, latlon)
            state["in_flight"] += 1
            while state["in_flight"] >= 2 * len(pool.procs):
                collect()
        while state["in_flight"]:
            collect()
    finally:
        pool.close()


def _blend_ready(waiting: dict[int, np.ndarray], start: int, batches: list[list[Tile]], blender: Blender) -> int:
    """Blend every consecutive finished batch from ``start``; return the next index to wait for."""
    while start in waiting:
        for t, logits in zip(batches[start], waiting.pop(start), strict=True):
            blender.add(t, logits)
        start += 1
    return start
