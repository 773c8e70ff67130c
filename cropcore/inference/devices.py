"""Devices and the workers that run a model on them.

The only place that moves tensors to devices. :func:`resolve_devices` turns ``"auto"``, ``"cpu:2"`` or
``"cuda:0,cuda:1"`` into one device name per worker (``CROPCORE_DEVICES`` overrides ``"auto"``, see
:mod:`cropcore.settings`); :class:`Runner` runs one model on one device under autocast and halves the batch on
CUDA out-of-memory; :class:`WorkerPool` runs one :class:`Runner` per device in its own process.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from cropcore import settings
from cropcore.errors import ConfigError, InferenceError
from cropcore.inference.options import AmpSpec

log = logging.getLogger(__name__)


def resolve_devices(devices: str | Sequence[str] = "auto") -> list[str]:
    """Device names, one per worker (``"auto"``: every CUDA device, else one CPU worker)."""
    if devices == "auto":
        devices = settings.devices()
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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX).

    Without it oneDNN emulates bf16, and AgrUNet ran 40x slower in bf16 than in fp32 on an AVX2-only CPU. torch
    offers no public test for this, hence its private ``torch.cpu`` helpers (missing ones count as no).
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast_dtype(device: str, amp: AmpSpec) -> torch.dtype | None:
    """The autocast dtype for ``device`` (``None``: run in fp32).

    ``amp=True`` picks bf16 on CUDA devices that support it (else fp16) and on CPUs with native bf16, and fp32
    on other CPUs, where emulated bf16 is much slower than fp32; a precision given by name is used as it is.
    """
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
    return torch.bfloat16 if cpu_has_native_bf16() else None


class Runner:
    """One model on one device: logits for a batch of tiles, halving the batch on CUDA OOM.

    ``location``: the model's ``forward(x, mask, latlon=...)`` takes (lat, lon) in degrees, (B, 2): each pixel's
    for a pixel classifier, the tile centre's for a patch model (see :class:`~cropcore.inference.location.Locator`).
    """

    def __init__(self, model: nn.Module, device: str, amp: AmpSpec, *, pixel: bool, location: bool = False,
                 threads: int | None = None) -> None:
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dtype = autocast_dtype(device, amp)
        self.pixel = pixel  # a pixel classifier (B, T, C): tiles are classified pixel by pixel
        self.location = location
        self.multiple = int(getattr(model, "size_multiple", 1))
        self.busy = 0.0  # seconds spent in logits()

    def _call(self, x: torch.Tensor, mask: torch.Tensor, latlon: torch.Tensor | None) -> torch.Tensor:
        return self.model(x, mask) if latlon is None else self.model(x, mask, latlon=latlon)

    def _forward(self, x: torch.Tensor, latlon: torch.Tensor | None = None) -> torch.Tensor:
        b, t, c, h, w = x.shape
        mask = torch.ones((b, t), dtype=torch.bool, device=x.device)
        if self.pixel:
            pixels = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
            where = None if latlon is None else latlon.reshape(b * h * w, 2)
            logits = self._call(pixels, mask.new_ones((b * h * w, t)), where)
            return logits.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        where = None if latlon is None else latlon[:, h // 2, w // 2]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:  # pad to the model's size multiple, then crop back
            flat = F.pad(x.reshape(b, t * c, h, w), (0, pw, 0, ph), mode="reflect" if min(h, w) > 1 else "replicate")
            x = flat.reshape(b, t, c, h + ph, w + pw)
        return self._call(x, mask, where)[..., :h, :w]

    @torch.inference_mode()
    def logits(self, batch: np.ndarray, latlon: np.ndarray | None = None) -> np.ndarray:
        """Float32 logits (B, K, h, w) for normalised tiles (B, T, C, h, w); ``latlon`` (B, h, w, 2) is each
        pixel's (lat, lon), needed by models that take location."""
        if self.location and latlon is None:
            raise InferenceError("this model takes each pixel's location, but none was given")
        t0 = time.perf_counter()
        try:
            return self._logits(batch, latlon if self.location else None)
        finally:
            self.busy += time.perf_counter() - t0

    def _logits(self, batch: np.ndarray, latlon: np.ndarray | None) -> np.ndarray:
        try:
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            where = None if latlon is None else torch.from_numpy(latlon).to(self.device)
            if self.dtype is None:
                out = self._forward(x, where)
            else:
                with torch.autocast(self.device.type, dtype=self.dtype):
                    out = self._forward(x, where)
            return out.float().cpu().numpy()
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise InferenceError(f"{self.device} is out of memory even for one tile: use a smaller tile") from None
            torch.cuda.empty_cache()
            half = len(batch) // 2
            log.warning("CUDA out of memory on %s: retrying with batches of %d", self.device, half)
            parts = [(batch[:half], None if latlon is None else latlon[:half]),
                     (batch[half:], None if latlon is None else latlon[half:])]
            return np.concatenate([self._logits(*part) for part in parts])


def _worker(model: nn.Module, device: str, amp: AmpSpec, pixel: bool, location: bool, threads: int,
            inbox: mp.Queue, outbox: mp.Queue) -> None:
    """Process loop: take ``(index, batch, latlon)``, put ``(index, logits)``; ``None`` ends it."""
    try:
        runner = Runner(model, device, amp, pixel=pixel, location=location, threads=threads)
        while (job := inbox.get()) is not None:
            index, batch, latlon = job
            outbox.put((index, runner.logits(batch, latlon)))
    except Exception as exc:  # reported to the parent, which raises it
        outbox.put((-1, f"{device}: {type(exc).__name__}: {exc}"))


class WorkerPool:
    """Worker processes, one per device, fed from one queue (so tiles are shared out, never duplicated)."""

    def __init__(self, model: nn.Module, devices: list[str], amp: AmpSpec, *, pixel: bool,
                 location: bool = False) -> None:
        ctx = mp.get_context("spawn")
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        cpu_workers = sum(d == "cpu" for d in devices)
        threads = max(1, (os.cpu_count() or 1) // max(cpu_workers, 1))
        self.procs = [ctx.Process(target=_worker, daemon=True,
                                  args=(model, d, amp, pixel, location, threads, self.inbox, self.outbox))
                      for d in devices]
        for p in self.procs:
            p.start()

    def submit(self, index: int, batch: np.ndarray, latlon: np.ndarray | None = None) -> None:
        self.inbox.put((index, batch, latlon))

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
