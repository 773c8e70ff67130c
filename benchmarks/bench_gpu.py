"""GPU inference benchmark: per-GPU throughput fp32 vs AMP, energy per image from NVML, multi-GPU scaling.

Usage: ``python benchmarks/bench_gpu.py [--quick] [--out benchmarks/results/infer_gpu.json]`` (or
``python -m cropcore bench gpu``). Needs a CUDA device (``--device cpu`` runs the same code on the CPU, without
power readings, to check the script itself).

1. Model, one GPU: AgrUNet (default widths, 10 bands, 10 classes, 128 x 128 patches) at T = 12 and T = 40,
   fp32 vs AMP (bf16 where the GPU supports it, else fp16), a few batch sizes. *model*: inputs already on the
   device, forward passes only (as papers time inference); *runner*: host arrays in, logits back on the host,
   through the ``Runner`` that ``predict_map`` uses. Each timed window lasts a few seconds after a warm-up.
2. Energy: over each *model* window the GPU's NVML energy counter (where it has one; else the mean of
   power samples taken every 20 ms), and the idle power for 2 s before; J/img = joules / images, with a CO2
   estimate at 445 g/kWh.
3. Scaling: ``predict_map`` over an in-memory random cube (tiles of 128 px, no overlap) on one GPU and on
   every visible GPU (one worker each); images/s and the speed-up.
4. End to end, one GPU: seeded synthetic COGs (24 dates x 9 bands + SCL, ``bench_load.make_cogs``) read in 512 px
   chunks by a reader thread (two batches ahead) and tiled (128 px, no overlap) into AgrUNet (batch 8, AMP), with
   the monthly composite, gap filling and normalisation either on the CPU (numba, in the dask graph) or on the GPU
   (``preprocess_tensor``, its own CUDA stream; the CPU only decodes); *model alone*: the same batches of random
   values through the model. Time ratio end to end / model alone, and the time the model waited for input.
5. Patch classifier, one GPU: ResNet-50 (original width 64, 12 bands, 120 x 120 px, 19 classes) inference and
   training steps (BCE, SGD), fp32 vs AMP, batch 64 and 256 (``bench_patches.steps``): patches/s and GFLOP/s
   (``--quick``: width 16, batch 2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from cropcore.inference.devices import Runner
    from cropcore.inference.reader import WindowReader
    from cropcore.inference.tiling import Blender, Tile

sys.path.insert(0, str(Path(__file__).parent))
from bench_load import CHUNK_BANDS, CHUNK_DATES, make_cogs

G_CO2_PER_KWH = 445.0


class PowerSampler(threading.Thread):
    """Board power of one GPU over a window: NVML samples every ``interval`` s and, where the GPU has one,
    its energy counter (mJ since the driver loaded) read at both ends."""

    def __init__(self, index: int, interval: float = 0.02) -> None:
        import pynvml

        super().__init__(daemon=True)
        pynvml.nvmlInit()
        self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
        self._interval, self._samples = interval, []
        self._stop_event = threading.Event()
        self._energy0 = self._energy_mj()

    def _energy_mj(self) -> int | None:
        try:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except self._nvml.NVMLError:  # older GPUs have no energy counter
            return None

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._samples.append(self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000)  # mW -> W
            time.sleep(self._interval)

    def stop(self) -> tuple[float, float | None]:
        """Mean sampled power (W) and the energy counter's difference (J; None without a counter)."""
        energy1 = self._energy_mj()
        self._stop_event.set()
        self.join()
        joules = None if self._energy0 is None or energy1 is None else (energy1 - self._energy0) / 1000
        return float(np.mean(self._samples)), joules


def measure(step, device: str, seconds: float, power: bool) -> tuple[int, float, tuple[float, float | None] | None]:
    """Run ``step()`` (returns images done) for about ``seconds`` after a warm-up.

    Returns the images, the seconds and, with ``power``, (mean W, J from the energy counter or None).
    """
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        step()
    sync()
    sampler = PowerSampler(torch.device(device).index or 0) if power else None
    if sampler:
        sampler.start()
    images, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        images += step()
    sync()
    elapsed = time.perf_counter() - t0
    return images, elapsed, sampler.stop() if sampler else None


def model_rows(device: str, quick: bool, power: bool) -> list[dict]:
    from cropcore.inference.devices import Runner, autocast_dtype
    from cropcore.models import build_model

    model = build_model("agrunet", in_channels=10, num_classes=10).eval().to(device)
    amp = autocast_dtype(device, True)  # None on a CPU without native bf16: fp32 only
    names = {torch.bfloat16: "bf16", torch.float16: "fp16"}
    rows = []
    for t in (12,) if quick else (12, 40):
        for precision, dtype in (("fp32", None), *([(names[amp], amp)] if amp else [])):
            for batch in (2,) if quick else (8, 32):
                x_host = np.random.default_rng(0).normal(size=(batch, t, 10, 128, 128)).astype("float32")
                x = torch.from_numpy(x_host).to(device)
                mask = torch.ones((batch, t), dtype=torch.bool, device=device)

                @torch.inference_mode()
                def forward(x=x, mask=mask, dtype=dtype, batch=batch) -> int:
                    with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
                        model(x, mask)
                    return batch

                images, elapsed, energy = measure(forward, device, 1.0 if quick else 5.0, power)
                runner = Runner(model, device, precision, pixel=False)
                r_images, r_elapsed, _ = measure(lambda r=runner, h=x_host: len(r.logits(h)), device,
                                                 1.0 if quick else 3.0, False)
                row = {"T": t, "precision": precision, "batch": batch, "model_img_per_s": images / elapsed,
                       "runner_img_per_s": r_images / r_elapsed}
                if energy is not None:
                    watts, joules = energy
                    # the energy counter where the GPU has one, else the sampled mean power over the window
                    row.update(power_w=watts, energy_source="counter" if joules is not None else "samples",
                               j_per_img=(joules if joules is not None else watts * elapsed) / images)
                    row["g_co2_per_1000_img"] = row["j_per_img"] * 1000 / 3.6e6 * G_CO2_PER_KWH
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def scaling_rows(devices: list[str], quick: bool) -> list[dict]:
    import xarray as xr

    from cropcore.inference.options import InferenceOptions
    from cropcore.inference.predict import predict_map
    from cropcore.models import build_model
    from cropcore.models.registry import untrained_meta

    meta = untrained_meta("agrunet", bands=10, classes=10)
    model = build_model("agrunet", in_channels=10, num_classes=10).eval()
    side = 512 if quick else 2048
    cube = xr.DataArray(np.random.default_rng(0).normal(size=(12, 10, side, side)).astype("float32"),
                        dims=("time", "band", "y", "x"), coords={"band": list(meta.bands)})
    tiles = (side // 128) ** 2
    rows = []
    for use in sorted({devices[0], ",".join(devices)}, key=len):
        t0 = time.perf_counter()
        predict_map(cube, model, meta=meta, options=InferenceOptions(tile=128, overlap=0, batch_size=8, devices=use))
        elapsed = time.perf_counter() - t0
        rows.append({"devices": use, "tiles": tiles, "seconds": elapsed, "img_per_s": tiles / elapsed})
        print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row["speedup"] = row["img_per_s"] / rows[0]["img_per_s"]
    return rows


def _through_model(reader: WindowReader, runner: Runner, batches: list[list[Tile]], blender: Blender) -> dict:
    """Every batch of ``reader`` through ``runner`` (a reader thread two batches ahead); seconds in all, waiting for
    input and in the model."""
    from cropcore.inference.reader import read_batches

    busy0, wait, t0 = runner.busy, 0.0, time.perf_counter()
    source = read_batches(reader, batches, blender, ahead=2)
    for batch in batches:
        t1 = time.perf_counter()
        data = next(source)
        wait += time.perf_counter() - t1
        for tile, logits in zip(batch, runner.logits(data), strict=True):
            blender.add(tile, logits)
    return {"seconds": time.perf_counter() - t0, "read_wait_s": wait, "model_s": runner.busy - busy0}


def end_to_end_rows(device: str, quick: bool) -> list[dict]:
    """COGs -> reader thread -> model on ``device``, preprocessing on the CPU vs on the device (see the docstring)."""
    import pystac

    from cropcore.cube.load import load_cube
    from cropcore.cube.normalise import NormStats
    from cropcore.cube.preprocess import plan_chunks, preprocess, time_axis
    from cropcore.inference.devices import Runner
    from cropcore.inference.predict import plan_batches
    from cropcore.inference.reader import WindowReader
    from cropcore.inference.tiling import Blender
    from cropcore.models import build_model

    side, bands, axis = 256 if quick else 1024, list(CHUNK_BANDS), time_axis("2021-01-01", periods=12)
    model = build_model("agrunet", in_channels=len(bands), num_classes=10).eval()
    runner = Runner(model, device, True, pixel=False)
    norm = NormStats(tuple(bands), (0.1,) * len(bands), (0.05,) * len(bands))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        items = [pystac.Item.from_dict(d) for d in make_cogs(Path(tmp), side, dates=CHUNK_DATES, bands=bands, scl=True)]
        print(f"generated {len(items)} dates of {side} px COGs in {time.perf_counter() - t0:.0f} s", flush=True)
        cube = load_cube(items, [*bands, "SCL"], crs="EPSG:32633", chunks={"time": 1, "x": 512, "y": 512}).cube
        _, _, height, width = cube.shape
        readers = {
            "cpu": lambda: WindowReader(preprocess(cube, axis=axis).sel(band=bands), norm=norm),
            "device": lambda: WindowReader(cube, norm=norm, plan=plan_chunks(cube, axis=axis, bands=bands),
                                           device=device),
        }

        def blender() -> Blender:
            return Blender(10, height, width, tile=128, overlap=0, strip=512, emit=lambda *a: None)

        batches = plan_batches(blender().tiles, 8, blender().strip_start)
        for make in readers.values():  # warm-up: numba and CUDA kernels, cuDNN's choices
            _through_model(make(), runner, batches[:2], blender())
        for where in ("cpu", "device"):
            run = _through_model(readers[where](), runner, batches, blender())
            rows.append({"preprocess_on": where, "pixels": height * width, "tiles": len(blender().tiles), **run})
        rng = np.random.default_rng(0)
        alone = runner.busy
        for batch in batches:
            runner.logits(rng.normal(size=(len(batch), len(axis), len(bands), 128, 128)).astype("float32"))
        alone = runner.busy - alone
    for row in rows:
        row.update(model_alone_s=alone, e2e_over_model_alone=row["seconds"] / alone)
        print(json.dumps(row), flush=True)
    return rows


def patch_rows(device: str, quick: bool) -> list[dict]:
    """ResNet-50 patch classifier on one device: inference and training patches/s, fp32 vs AMP."""
    from bench_patches import fastest, gflop, steps

    from cropcore.inference.devices import autocast_dtype
    from cropcore.patches.registry import build_patch_model

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    amp = autocast_dtype(device, True)
    rows = []
    for precision, dtype in (("fp32", None), *([(str(amp).removeprefix("torch."), amp)] if amp else [])):
        for batch in (2,) if quick else (64, 256):
            torch.manual_seed(0)
            width = 16 if quick else 64  # quick: the shipped width, to check the script cheaply
            model = build_patch_model("resnet50", in_channels=12, num_classes=19, width=width).to(device)
            g_inf = gflop(model.eval(), torch.randn(1, 12, 120, 120, device=device), False)
            infer, train = steps(model, device, batch, batch, dtype)
            repeats = 2 if quick else 10
            row = {"model": f"resnet50 (width {width})", "precision": precision, "batch": batch,
                   "inference_patches_per_s": batch / fastest(infer, repeats, sync),
                   "training_patches_per_s": batch / fastest(train, repeats, sync),
                   "gflop_per_patch_inference": g_inf}
            row["inference_gflop_per_s"] = g_inf * row["inference_patches_per_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T=12 and one batch size only, short windows")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: run the same code on the CPU (checks the script; no power readings)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "infer_gpu.json")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "no CUDA device is visible: run this on a GPU machine (or --device cpu to check the script)\n")
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if args.device == "cuda" else ["cpu"]
    power = args.device == "cuda"
    result: dict = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "cuda": torch.version.cuda,
                    "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]},
        "g_co2_per_kwh": G_CO2_PER_KWH,
    }
    if power:
        sampler = PowerSampler(0)
        sampler.start()
        time.sleep(2)
        result["idle_power_w"] = sampler.stop()[0]
    result["model"] = model_rows(devices[0], args.quick, power)
    result["scaling"] = scaling_rows(devices, args.quick)
    result["end_to_end"] = end_to_end_rows(devices[0], args.quick)
    result["patches"] = patch_rows(devices[0], args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
