"""Tiled, mixed-precision inference over a datacube on every visible device.

The only module that moves tensors to devices. :func:`predict_map` cuts the cube into overlapping tiles
laid in column strips (:mod:`cropcore.inference.tiling`), reads them lazily a batch at a time (on GPUs a background
thread reads ahead while the model runs), normalises them with the model's statistics, runs the model under
autocast on one worker per device (in-process for a single device, ``torch.multiprocessing`` workers
otherwise), blends the logits of overlapping tiles with smooth weights and keeps only the outputs: the class
map, the confidence (max probability) and, optionally, per-class probabilities.

Devices: ``devices="auto"`` uses every visible CUDA device, else the CPU. ``"cpu:2"`` runs two CPU
workers; ``"cuda:0,cuda:1"`` picks GPUs; the ``CROPCORE_DEVICES`` environment variable overrides
``"auto"``. AMP: ``amp=True`` picks bf16 (CPU, or CUDA with bf16 support) or fp16 (older CUDA); ``"bf16"``,
``"fp16"`` or ``False``/``"fp32"`` force a precision. A CUDA out-of-memory error halves the batch and
retries.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import dask.array as da
import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
import xarray as xr
from torch import nn

from cropcore.cube.dask_setup import compute
from cropcore.cube.preprocess import NormStats
from cropcore.errors import ConfigError, InferenceError
from cropcore.inference.sinks import NODATA, ArraySink, MapSink
from cropcore.inference.tiling import Blender, Tile
from cropcore.models import TempCNN

__all__ = ["NODATA", "Runner", "WindowReader", "autocast_dtype", "plan_batches", "predict_map", "resolve_devices"]

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
AmpSpec = bool | str


def resolve_devices(devices: str | Sequence[str] = "auto") -> list[str]:
    """Device names, one per worker (``"auto"``: every CUDA device, else one CPU worker)."""
    if devices == "auto":
        devices = os.environ.get("CROPCORE_DEVICES", "auto")
    if devices == "auto":
        n = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
    names = [d.strip() for d in devices.split(",")] if isinstance(devices, str) else list(devices)
    out: list[str] = []
    for name in names:
        if name.startswith("cpu"):
            count = int(name.split(":")[1]) if ":" in name else 1
            if count < 1:
                raise ConfigError(f"need at least one CPU worker, got {name!r}")
            out += ["cpu"] * count
        elif name.startswith("cuda"):
            index = int(name.split(":")[1]) if ":" in name else 0
            if index >= torch.cuda.device_count():
                raise ConfigError(f"{name} is not visible ({torch.cuda.device_count()} CUDA devices); "
                                  "use devices='auto' or 'cpu'")
            out.append(f"cuda:{index}")
        else:
            raise ConfigError(f"unknown device {name!r}: use 'auto', 'cpu', 'cpu:N' or 'cuda:I[,cuda:J]'")
    if not out:
        raise ConfigError("no device given")
    return out


def autocast_dtype(device: str, amp: AmpSpec) -> torch.dtype | None:
    """The autocast dtype for ``device`` (``None``: run in fp32)."""
    if amp in (False, "fp32", None):
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp is not True:
        raise ConfigError(f"amp must be True, False, 'bf16', 'fp16' or 'fp32', got {amp!r}")
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


class Runner:
    """One model on one device: logits for a batch of tiles, halving the batch on CUDA OOM."""

    def __init__(self, model: nn.Module, device: str, amp: AmpSpec, threads: int | None = None) -> None:
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dtype = autocast_dtype(device, amp)
        self.pixel = isinstance(model, TempCNN)
        self.multiple = int(getattr(model, "size_multiple", 1))
        self.busy = 0.0  # seconds spent in logits()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        mask = torch.ones((b, t), dtype=torch.bool, device=x.device)
        if self.pixel:
            pixels = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
            logits = self.model(pixels, mask.new_ones((b * h * w, t)))
            return logits.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:  # pad to the model's size multiple, then crop back
            flat = F.pad(x.reshape(b, t * c, h, w), (0, pw, 0, ph), mode="reflect" if min(h, w) > 1 else "replicate")
            x = flat.reshape(b, t, c, h + ph, w + pw)
        return self.model(x, mask)[..., :h, :w]

    @torch.inference_mode()
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Float32 logits (B, K, h, w) for normalised tiles (B, T, C, h, w)."""
        t0 = time.perf_counter()
        try:
            return self._logits(batch)
        finally:
            self.busy += time.perf_counter() - t0

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        try:
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            if self.dtype is None:
                out = self._forward(x)
            else:
                with torch.autocast(self.device.type, dtype=self.dtype):
                    out = self._forward(x)
            return out.float().cpu().numpy()
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise InferenceError(f"{self.device} is out of memory even for one tile: use a smaller tile") from None
            torch.cuda.empty_cache()
            half = len(batch) // 2
            log.warning("CUDA out of memory on %s: retrying with batches of %d", self.device, half)
            return np.concatenate([self._logits(batch[:half]), self._logits(batch[half:])])


def _worker(model: nn.Module, device: str, amp: AmpSpec, threads: int, inbox: mp.Queue, outbox: mp.Queue) -> None:
    """Process loop: take ``(index, batch)``, put ``(index, logits)``; ``None`` ends it."""
    try:
        runner = Runner(model, device, amp, threads)
        while (job := inbox.get()) is not None:
            index, batch = job
            outbox.put((index, runner.logits(batch)))
    except Exception as exc:  # reported to the parent, which raises it
        outbox.put((-1, f"{device}: {type(exc).__name__}: {exc}"))


class _Pool:
    """Worker processes, one per device, fed from one queue (so tiles are shared out, never duplicated)."""

    def __init__(self, model: nn.Module, devices: list[str], amp: AmpSpec) -> None:
        ctx = mp.get_context("spawn")
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        cpu_workers = sum(d == "cpu" for d in devices)
        threads = max(1, (os.cpu_count() or 1) // max(cpu_workers, 1))
        self.procs = [ctx.Process(target=_worker, args=(model, d, amp, threads, self.inbox, self.outbox), daemon=True)
                      for d in devices]
        for p in self.procs:
            p.start()

    def submit(self, index: int, batch: np.ndarray) -> None:
        self.inbox.put((index, batch))

    def result(self) -> tuple[int, np.ndarray]:
        while True:
            try:
                index, out = self.outbox.get(timeout=5)
            except queue.Empty:
                dead = [p for p in self.procs if not p.is_alive()]
                if dead:
                    raise InferenceError(f"an inference worker died (exit code {dead[0].exitcode})") from None
                continue
            if index < 0:
                raise InferenceError(f"inference failed on {out}")
            return index, out

    def close(self) -> None:
        for _ in self.procs:
            self.inbox.put(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


def plan_batches(tiles: list[Tile], batch_size: int) -> list[list[Tile]]:
    """Consecutive tiles of equal size, at most ``batch_size`` per batch."""
    out: list[list[Tile]] = []
    for t in tiles:
        if out and len(out[-1]) < batch_size and (out[-1][0].height, out[-1][0].width) == (t.height, t.width):
            out[-1].append(t)
        else:
            out.append([t])
    return out


class WindowReader:
    """Model-ready windows of a ``(time, band, y, x)`` cube; each dask chunk is computed once while tiles need it.

    Tiles arrive strip by strip (see :class:`~cropcore.inference.tiling.Blender`), row-major inside a strip. A chunk is
    computed when a window first needs it and dropped by :meth:`release` once reading has passed it; of each
    chunk the last ``halo`` columns are kept until the next strip, which starts that far inside it. Memory
    holds about two chunk rows of one strip plus those columns, whatever the AOI's size.

    Values are float32, normalised with ``norm`` when given (missing values, NaN, then become 0: the band
    mean); :attr:`valid` marks the pixels read so far that hold a value in some date and band.
    """

    def __init__(self, cube: xr.DataArray, *, halo: int = 0, norm: NormStats | None = None) -> None:
        data = cube.data
        self.lazy = isinstance(data, da.Array)
        if self.lazy:
            data = data.rechunk({0: -1, 1: -1})
            self.ybounds = np.cumsum((0, *data.chunks[2]))
            self.xbounds = np.cumsum((0, *data.chunks[3]))
        self.data, self.halo_px, self.norm = data, halo, norm
        self.valid = np.zeros(cube.shape[2:], dtype=bool)
        self.cache: dict[tuple[int, int], np.ndarray] = {}
        self.halo: dict[tuple[int, int], np.ndarray] = {}  # last ``halo`` columns of computed chunks

    def _prepare(self, values: np.ndarray, ys: slice, xs: slice) -> np.ndarray:
        """Mark valid pixels of the window ``ys, xs`` and normalise ``values`` (a float32 array we own) in place."""
        missing = np.isnan(values)
        self.valid[ys, xs] |= ~missing.all(axis=(0, 1))
        if self.norm is not None:
            self.norm.scale(values, band_axis=1, inplace=True)
            np.copyto(values, 0, where=missing)
        return values

    def _blocks(self, bounds: np.ndarray, lo: int, hi: int) -> range:
        return range(int(np.searchsorted(bounds, lo, side="right")) - 1, int(np.searchsorted(bounds, hi, side="left")))

    def _piece(self, i: int, j: int, xs: slice) -> tuple[np.ndarray, int] | None:
        """Chunk ``(i, j)`` or its kept right columns (if they hold ``xs``), with its first column."""
        if (i, j) in self.cache:
            return self.cache[i, j], int(self.xbounds[j])
        kept = self.halo.get((i, j))
        if kept is not None and xs.start >= self.xbounds[j + 1] - kept.shape[3]:
            return kept, int(self.xbounds[j + 1]) - kept.shape[3]
        return None

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """The window ``[:, :, ys, xs]``."""
        if not self.lazy:
            return self._prepare(np.array(self.data[:, :, ys, xs], dtype=np.float32), ys, xs)
        iys, ixs = self._blocks(self.ybounds, ys.start, ys.stop), self._blocks(self.xbounds, xs.start, xs.stop)
        missing = [(i, j) for i in iys for j in ixs if self._piece(i, j, xs) is None]
        if missing:  # one graph traversal for all chunks this window lacks
            arrays = compute(*[self.data.blocks[:, :, i, j] for i, j in missing])
            for (i, j), value in zip(missing, arrays, strict=True):
                window = slice(*self.ybounds[i:i + 2]), slice(*self.xbounds[j:j + 2])
                self.cache[i, j] = self._prepare(np.array(value, dtype=np.float32), *window)
                if self.halo_px and j < len(self.xbounds) - 2:
                    self.halo[i, j] = self.cache[i, j][..., -self.halo_px:].copy()
        rows = []
        for i in iys:
            y0, y1 = int(self.ybounds[i]), int(self.ybounds[i + 1])
            rs = slice(max(ys.start, y0) - y0, min(ys.stop, y1) - y0)
            pieces = []
            for j in ixs:
                piece, x0 = self._piece(i, j, xs)  # type: ignore[misc]  # computed above
                pieces.append(piece[:, :, rs, max(xs.start, x0) - x0:min(xs.stop, x0 + piece.shape[3]) - x0])
            rows.append(pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=3))
        return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=2)

    def release(self, row: int, col: int) -> None:
        """Reading continues at ``row`` of the strip starting at ``col``: forget chunks no longer needed."""
        if not self.lazy:
            return
        for key in list(self.cache):
            i, j = key
            if self.ybounds[i + 1] <= row or self.xbounds[j + 1] <= col + self.halo_px:
                del self.cache[key]
        for key in list(self.halo):
            i, j = key
            if self.xbounds[j + 1] <= col or (self.ybounds[i + 1] <= row and self.xbounds[j + 1] <= col + self.halo_px):
                del self.halo[key]


def _read_batches(
    reader: WindowReader, batches: list[list[Tile]], blender: Blender, ahead: int
) -> Iterator[np.ndarray]:
    """(B, T, C, h, w) arrays from ``reader``, read by a thread that stays ``ahead`` batches ahead (``ahead=0``:
    read in the caller's thread, between model calls)."""

    def read(batch: list[Tile]) -> np.ndarray:
        arrays = []
        for t in batch:
            reader.release(t.row, blender.strip_start(t))
            arrays.append(reader.read(*t.slices))
        return np.stack(arrays)

    if ahead == 0:
        yield from map(read, batches)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(read, b) for b in batches[:ahead]]
        for i in range(len(batches)):
            if i + ahead < len(batches):
                pending.append(pool.submit(read, batches[i + ahead]))
            yield pending[i].result()
            pending[i] = None  # type: ignore[call-overload]  # free the batch


def predict_map(
    cube: xr.DataArray,
    model: nn.Module,
    *,
    meta: dict,
    tile: int = 64,
    overlap: int = 16,
    strip: int | None = 512,
    batch_size: int = 4,
    devices: str | Sequence[str] = "auto",
    amp: AmpSpec = True,
    probabilities: bool = False,
    sink: MapSink | None = None,
    progress: Progress | None = None,
) -> xr.Dataset:
    """Crop map of a preprocessed ``(time, band, y, x)`` reflectance cube on the model's time axis.

    ``meta`` is the checkpoint metadata (bands in order, ``norm`` statistics, ``legend``). Returns an
    ``xarray.Dataset`` on the cube's grid with ``class`` (uint8; :data:`NODATA` where the cube holds no
    value at all), ``confidence`` (float32, max probability; NaN there) and, with ``probabilities=True``,
    ``probability`` (class, y, x). The map is kept in memory unless ``sink`` (e.g. a
    :class:`~cropcore.inference.sinks.GeoTiffSink`) takes the finished blocks as they come.

    Tiles are read in column strips ``strip`` pixels wide (``None``: the whole width), top to bottom inside
    each strip; with a dask cube chunked ``strip`` pixels wide in x (see :func:`cropcore.pipeline.cube_chunks`),
    input memory then stays about two chunk rows of one strip, whatever the AOI's size. Pixel classifiers
    (TempCNN) ignore ``overlap``: their output does not depend on neighbours, so overlapping tiles would only
    repeat work.
    """
    bands = list(meta["bands"])
    have = [str(b) for b in cube["band"].values]
    if have != bands:
        missing = [b for b in bands if b not in have]
        if missing:
            raise ConfigError(f"the cube lacks bands {missing} that the model needs (it has {have})")
        cube = cube.sel(band=bands)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    _, _, height, width = cube.shape
    classes = len(meta["legend"])
    device_list = resolve_devices(devices)
    if isinstance(model, TempCNN):
        overlap = 0
    if sink is None:
        sink = ArraySink(height, width, classes, probabilities=probabilities)
    elif probabilities:
        raise ConfigError("probabilities=True keeps every class in memory: it cannot be combined with a sink")

    window_reader = WindowReader(cube, halo=overlap, norm=NormStats.from_meta(meta))

    def emit(row0: int, col0: int, block: np.ndarray) -> None:  # blended logits of a finished block
        p = torch.softmax(torch.from_numpy(block), dim=0).numpy()
        valid = window_reader.valid[row0:row0 + block.shape[1], col0:col0 + block.shape[2]]
        sink.write(row0, col0, p, valid)

    blender = Blender(classes, height, width, tile=tile, overlap=overlap, strip=strip, emit=emit)
    batches = plan_batches(blender.tiles, batch_size)
    report = progress or (lambda f, m: None)
    report(0.0, f"{len(blender.tiles)} tiles on {', '.join(device_list)}")
    # a single CPU worker reads between model calls: reading (dask threads) and the model (torch threads) running
    # at once on the same cores slowed the model down by as much as the overlap saved (benchmarks/README.md)
    ahead = 0 if device_list == ["cpu"] else 2 * len(device_list)
    reader = _read_batches(window_reader, batches, blender, ahead=ahead)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    if len(device_list) == 1:
        runner = Runner(model, device_list[0], amp)
        for i, batch in enumerate(batches):
            t0 = time.perf_counter()
            data = next(reader)
            timings["read_wait"] = timings.get("read_wait", 0.0) + time.perf_counter() - t0
            for t, logits in zip(batch, runner.logits(data), strict=True):
                blender.add(t, logits)
            report((i + 1) / len(batches), f"batch {i + 1}/{len(batches)}")
        timings["model"] = runner.busy
        reader.close()
    else:
        _run_pool(model, device_list, amp, batches, reader, blender, report)
    timings["total"] = time.perf_counter() - t_start
    out = sink.dataset({"y": cube["y"], "x": cube["x"]})
    if "spatial_ref" in cube.coords:
        out = out.assign_coords(spatial_ref=cube["spatial_ref"])
    out.attrs["class_names"] = [c["name"] for c in meta["legend"]]
    out.attrs["timings"] = timings  # seconds: total, and for one device the model and the wait for input
    return out


def _run_pool(
    model: nn.Module, devices: list[str], amp: AmpSpec, batches: list[list[Tile]], reader: Iterator[np.ndarray],
    blender: Blender, report: Progress,
) -> None:
    """Share batches out to one worker per device; blend results in plan order as they come back."""
    pool = _Pool(model.cpu(), devices, amp)
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
        for index, data in enumerate(reader):
            pool.submit(index, data)
            state["in_flight"] += 1
            while state["in_flight"] >= 2 * len(devices):
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
