"""The strips of a map run as tasks on the workers of a dask.distributed cluster: :func:`run_on_cluster`.

Each worker loads the model once (:class:`ModelPlugin`, a ``distributed.WorkerPlugin``) on the first GPU it sees
(give each worker its own with ``CUDA_VISIBLE_DEVICES``, as dask-cuda does) or on its cores (as many torch threads
as the worker has threads, one model call at a time). A strip task (:func:`run_strip`) gets the strip's columns of
the cube: for a lazy cube that is its culled dask graph (the load and preprocessing of those columns, no pixels),
which the worker computes chunk by chunk with its own threads, as a local run reads. It runs the strip's tiles
through the model and returns the map layers of the columns only this strip covers, block by block, plus the
weighted sums of the logits in the columns it shares with its neighbours (:class:`Seam`). The client writes
layers to the sink as strips complete and finishes each shared band of columns once both neighbours are in.

The map is identical to a local run's on the same device with the same number of torch threads: tiles, batches,
blending weights and the order of every sum are the same, and each block of probabilities has the shape and place
it has in a local run (torch's softmax can round a pixel differently elsewhere in a block).
"""

from __future__ import annotations

import importlib.metadata
import logging
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import cloudpickle
import dask
import numpy as np
import torch
import xarray as xr
from distributed import Client, KilledWorker, WorkerPlugin, as_completed, get_worker
from torch import nn

from cropcore import settings
from cropcore.cube.normalise import NormStats
from cropcore.errors import ConfigError, InferenceError
from cropcore.inference.calibrate import Decision, Layers
from cropcore.inference.devices import Runner
from cropcore.inference.location import Locator
from cropcore.inference.options import AmpSpec, InferenceOptions
from cropcore.inference.predict import class_probabilities, plan_batches
from cropcore.inference.reader import WindowReader, read_batches
from cropcore.inference.sinks import MapSink
from cropcore.inference.tiling import Blender, Tile, blend_weights, strip_extents, tile_origins
from cropcore.models.meta import ModelMeta
from cropcore.models.registry import uses_location
from cropcore.progress import Progress

log = logging.getLogger(__name__)

#: Seconds to wait for the scheduler to answer, and for a first worker to join it.
CONNECT_TIMEOUT_S = 10
WORKERS_TIMEOUT_S = 60


class ModelPlugin(WorkerPlugin):
    """The model on one worker, loaded once when the plugin is registered (and on every worker that joins later)."""

    def __init__(self, model: nn.Module, amp: AmpSpec, *, pixel: bool, location: bool, cpu_only: bool) -> None:
        self.model, self.amp, self.pixel, self.location, self.cpu_only = model.cpu(), amp, pixel, location, cpu_only
        self.runner: Runner | None = None

    def setup(self, worker: Any) -> None:
        if settings.dask_scheduler() not in ("threads", "sync"):
            raise ConfigError(f"worker {worker.address} has CROPCORE_DASK_SCHEDULER={settings.dask_scheduler()}: "
                              "unset it for the workers, which read their strips with their own threads")
        device = "cuda:0" if torch.cuda.is_available() and not self.cpu_only else "cpu"
        if device != "cpu" and torch.cuda.device_count() > 1:
            log.warning("worker %s sees %d GPUs and uses the first: give each worker one (CUDA_VISIBLE_DEVICES)",
                        worker.address, torch.cuda.device_count())
        self.lock = threading.Lock()  # one model call at a time: the strips of a worker's threads take turns
        self.runner = Runner(self.model, device, self.amp, pixel=self.pixel, location=self.location,
                             threads=worker.state.nthreads)

    def teardown(self, worker: Any) -> None:
        self.runner = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def logits(self, batch: np.ndarray, latlon: np.ndarray | None) -> np.ndarray:
        assert self.runner is not None, "the plugin is used before its setup"
        with self.lock:
            return self.runner.logits(batch, latlon)


@dataclass(frozen=True)
class Strip:
    """A column strip ``[x0, x1)`` of the map; ``left`` / ``right``: columns it shares with its neighbours."""

    index: int
    x0: int
    x1: int
    left: int
    right: int

    @property
    def keep(self) -> int:
        """Width of the blocks a local run finishes for this strip (all but the columns shared on the right)."""
        return self.x1 - self.x0 - self.right


def plan_strips(width: int, *, tile: int, overlap: int, strip: int | None) -> list[Strip]:
    """The strips of a local run (:func:`~cropcore.inference.tiling.strip_extents`) and the columns they share."""
    extents = strip_extents(width, tile=tile, overlap=overlap, strip=strip)
    shared = overlap if len(extents) > 1 else 0
    last = len(extents) - 1
    return [Strip(i, x0, x1, shared if i else 0, shared if i < last else 0) for i, (x0, x1) in enumerate(extents)]


@dataclass(frozen=True)
class Plan:
    """What every strip task of a run shares."""

    plugin: str
    classes: int
    tile: int
    overlap: int
    batch_size: int
    norm: NormStats
    decision: Decision
    keep_probabilities: bool
    located: bool


@dataclass
class Seam:
    """Weighted sums of the logits (K, H, n) and of the weights (H, n) of a strip's tiles over shared columns."""

    acc: np.ndarray
    wsum: np.ndarray
    valid: np.ndarray

    @classmethod
    def empty(cls, classes: int, height: int, width: int) -> Seam:
        return cls(np.zeros((classes, height, width)), np.zeros((height, width)), np.zeros((height, width), bool))

    def add(self, tile: Tile, col0: int, weighted: np.ndarray, weights: np.ndarray) -> None:
        """Add a tile's ``values x weights`` over the seam's columns (it starts at strip column ``col0``), as
        :class:`~cropcore.inference.tiling.Blender` adds them."""
        lo, hi = max(tile.col, col0), min(tile.col + tile.width, col0 + self.wsum.shape[1])
        if lo < hi:
            rows = slice(tile.row, tile.row + tile.height)
            self.acc[:, rows, lo - col0:hi - col0] += weighted[:, :, lo - tile.col:hi - tile.col]
            self.wsum[rows, lo - col0:hi - col0] += weights[:, lo - tile.col:hi - tile.col]


@dataclass
class StripResult:
    """A strip's layers (block by block: first row, layers of its own columns), its seams and its timings."""

    strip: Strip
    blocks: list[tuple[int, Layers]]
    left: Seam
    right: Seam
    model_s: float
    read_s: float


def run_strip(payload: bytes, strip: Strip, plan: Plan) -> StripResult:
    """The task: read the strip's cube (pickled in ``payload``), run its tiles and blend them (on a worker)."""
    model: ModelPlugin = get_worker().plugins[plan.plugin]
    cube: xr.DataArray = pickle.loads(payload)
    height, width = cube.shape[2:]
    reader = WindowReader(cube, norm=plan.norm)
    locator = Locator(cube) if plan.located else None
    left = Seam.empty(plan.classes, height, strip.left)
    right = Seam.empty(plan.classes, height, strip.right)
    blocks: list[tuple[int, Layers]] = []

    def emit(row0: int, _: int, block: np.ndarray) -> None:  # blended logits of rows of the whole strip
        p = class_probabilities(np.ascontiguousarray(block[:, :, :strip.keep]), plan.decision.temperature)
        valid = reader.valid[row0:row0 + block.shape[1], strip.left:strip.keep]
        blocks.append((row0, plan.decision.decide(p[:, :, strip.left:], valid, keep=plan.keep_probabilities)))

    blender = Blender(plan.classes, height, width, tile=plan.tile, overlap=plan.overlap, emit=emit)
    batches = plan_batches(blender.tiles, plan.batch_size)
    assert model.runner is not None
    batch_reader = read_batches(reader, batches, blender, ahead=0 if model.runner.device.type == "cpu" else 2)
    model_s = read_s = 0.0
    for batch in batches:
        t0 = time.perf_counter()
        data = next(batch_reader)
        t1 = time.perf_counter()
        logits = model.logits(data, None if locator is None else locator.batch(batch))
        read_s, model_s = read_s + t1 - t0, model_s + time.perf_counter() - t1
        for t, values in zip(batch, logits, strict=True):
            blender.add(t, values)
            if strip.left or strip.right:
                weights = blend_weights(t.height, t.width, plan.overlap)
                weighted = values * weights
                left.add(t, 0, weighted, weights)
                right.add(t, width - strip.right, weighted, weights)
    left.valid, right.valid = reader.valid[:, :strip.left], reader.valid[:, width - strip.right:]
    return StripResult(strip, blocks, left, right, model_s, read_s)


def seam_blocks(before: Seam, after: Seam, strip: Strip, bands: list[tuple[int, int]], plan: Plan
                ) -> Iterator[tuple[int, Layers]]:
    """Layers of the columns ``strip`` shares with the strip before it, band of rows by band of rows."""
    logits = ((after.acc + before.acc) / (after.wsum + before.wsum)).astype(np.float32)
    for r0, r1 in bands:
        block = np.zeros((plan.classes, r1 - r0, strip.keep), np.float32)  # where a local run has these columns
        block[:, :, :strip.left] = logits[:, r0:r1]
        p = class_probabilities(block, plan.decision.temperature)[:, :, :strip.left]
        yield r0, plan.decision.decide(p, after.valid[r0:r1], keep=plan.keep_probabilities)


def connect(address: str) -> Client:
    """A client of the scheduler at ``address`` with at least one worker that has cropcore, else ConfigError."""
    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the dask scheduler at {address} ({exc}): start one with `dask scheduler` and workers "
            f"with `dask worker {address}` (in an environment with cropcore), or run on this machine without "
            "--scheduler and CROPCORE_DASK_SCHEDULER (docs/SCALING.md)") from exc
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        versions = client.run(importlib.metadata.version, "cropcore", on_error="return")
    except (OSError, TimeoutError) as exc:
        client.close()
        raise ConfigError(f"the dask scheduler at {address} has no workers after {WORKERS_TIMEOUT_S} s: start "
                          f"some with `dask worker {address}`") from exc
    mine = importlib.metadata.version("cropcore")
    wrong = {w: v for w, v in versions.items() if v != mine}
    if wrong:
        client.close()
        worker, found = next(iter(wrong.items()))
        what = f"cropcore {found}" if isinstance(found, str) else f"no cropcore ({type(found).__name__})"
        raise ConfigError(f"{len(wrong)} of {len(versions)} dask workers lack cropcore {mine} ({worker} has "
                          f"{what}): install this cropcore in the workers' environment")
    return client


def run_on_cluster(
    address: str, cube: xr.DataArray, model: nn.Module, *, meta: ModelMeta, options: InferenceOptions,
    sink: MapSink, keep: bool, progress: Progress,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Run the map's strips on the cluster at ``address`` into ``sink`` as they complete.

    Returns the timings in seconds (``total`` here; ``model`` and ``read_wait`` summed over the strips) and what
    was sent (``model_bytes``: the pickled plugin; ``input_bytes``: the strips' pickled cubes, a culled graph for a
    lazy cube). A strip whose worker dies is run again on another worker (``distributed.scheduler.allowed-failures``
    times at most); the strips already written stay written.
    """
    if options.devices not in ("auto", "cpu"):
        raise ConfigError(f"on a cluster each worker uses its own GPU or cores: devices must be 'auto' or 'cpu', "
                          f"got {options.devices!r}")
    t_start = time.perf_counter()
    _, _, height, width = cube.shape
    overlap = 0 if meta.is_pixel else options.overlap
    located = uses_location(meta.architecture)
    plugin = ModelPlugin(model, options.amp, pixel=meta.is_pixel, location=located, cpu_only=options.devices == "cpu")
    plan = Plan(f"cropcore-model-{uuid.uuid4().hex}", meta.num_classes, options.tile, overlap, options.batch_size,
                NormStats.from_meta(meta), Decision.for_model(meta, options.min_confidence), keep, located)
    strips = plan_strips(width, tile=options.tile, overlap=overlap, strip=options.strip)
    payloads = [cloudpickle.dumps(dask.optimize(cube.isel(x=slice(s.x0, s.x1)))[0]) for s in strips]
    sent = {"address": address, "strips": len(strips), "model_bytes": len(cloudpickle.dumps(plugin)),
            "input_bytes": sum(map(len, payloads))}
    bands = list(pairwise([*tile_origins(height, options.tile, overlap), height]))  # as a local run emits rows
    client = connect(address)
    try:
        _check_setup(client.register_plugin(plugin, name=plan.plugin))
        sent["workers"] = len(client.scheduler_info(n_workers=-1)["workers"])
        progress(0.0, f"{len(strips)} strips on {sent['workers']} dask workers")
        futures = [client.submit(run_strip, payload, s, plan, pure=False, key=f"cropcore-strip-{s.index}-{plan.plugin}")
                   for payload, s in zip(payloads, strips, strict=True)]
        del payloads
        try:
            timings = _collect(client, futures, strips, bands, plan, sink, progress)
        finally:
            client.cancel(futures)
            client.unregister_worker_plugin(plan.plugin)
    finally:
        client.close()
    timings["total"] = time.perf_counter() - t_start
    return timings, sent


def _check_setup(responses: dict[str, dict]) -> None:
    """Raise what a worker said when setting the model up failed."""
    failed = {w: r for w, r in responses.items() if r.get("status") != "OK"}
    if failed:
        worker, response = next(iter(failed.items()))
        raise InferenceError(f"the model could not be set up on {len(failed)} of {len(responses)} dask workers "
                             f"({worker}: {response.get('exception')!r})")


def _collect(client: Client, futures: list, strips: list[Strip], bands: list[tuple[int, int]], plan: Plan,
             sink: MapSink, progress: Progress) -> dict[str, float]:
    """Write each strip's layers as it completes, and each shared band of columns once both its strips are in."""
    rights: dict[int, Seam] = {}  # right seams of finished strips, until the next strip is in
    lefts: dict[int, Seam] = {}
    timings = {"model": 0.0, "read_wait": 0.0}
    for done, future in enumerate(as_completed(futures, loop=client.loop), 1):
        result = _result(future)
        s = result.strip
        for row0, layers in result.blocks:
            sink.write(row0, s.x0 + s.left, layers)
        if s.left:
            lefts[s.index] = result.left
        if s.right:
            rights[s.index] = result.right
        for k in (s.index, s.index + 1):  # the seams this strip may have completed
            if k in lefts and k - 1 in rights:
                for row0, layers in seam_blocks(rights.pop(k - 1), lefts.pop(k), strips[k], bands, plan):
                    sink.write(row0, strips[k].x0, layers)
        timings["model"] += result.model_s
        timings["read_wait"] += result.read_s
        progress(done / len(strips), f"strip {done}/{len(strips)}")
    return timings


def _result(future: Any) -> StripResult:
    try:
        result = future.result()
    except KilledWorker as exc:
        raise InferenceError(
            f"the workers that ran a strip died each time ({exc}); dask ran it again on another worker up to "
            "distributed.scheduler.allowed-failures times: look for out-of-memory kills in the workers' logs, or "
            "use a narrower --strip") from exc
    future.release()
    return result
