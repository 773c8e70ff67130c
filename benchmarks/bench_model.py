"""Parameters, FLOPs and CPU throughput of AgrUNet on 128 x 128 x 10-band patches, against the matmul ceiling.

Usage: ``python benchmarks/bench_model.py [--repeats 5] [--widths 16 32 64 128] [--batches 1 4]
[--energy-seconds 3] [--out FILE.json]``.

For T = 12 and 40 and each batch size, in one run:

* ``fp32``: the model as shipped, whose 3-D convolutions call oneDNN directly (:mod:`cropcore.models.conv`);
* ``fp32 default dispatch``: the same weights through ``torch.nn.Conv3d``, i.e. PyTorch's own choice of kernel
  (at batch 1 it falls back to ``slow_conv3d`` for small inputs);
* ``bf16`` autocast, only on a CPU with native bf16 (elsewhere oneDNN emulates it 40-110x slower than fp32 and
  the product runs fp32: ``inference.devices.cpu_has_native_bf16``).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (2 x multiply-accumulates, convolutions and
matmuls only); throughput is the fastest of ``--repeats`` timed forward passes after a warm-up (the median is
kept too), in ``torch.inference_mode``. Energy per row (the AgrUNet paper's average power W and J per patch)
comes from :class:`cropcore.energy.EnergyMeter` around a separate loop of forward passes lasting at least
``--energy-seconds`` (codecarbon's CPU-load estimate samples once a second; hardware counters need less), with
the method it used (``docs/ENERGY.md``); ``--energy-seconds 0`` skips it. The ceilings are the fastest of 7
2048^3 matmuls in this run. The 1-minute load average before and after is recorded: on a shared machine it says
how much to trust the numbers.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cropcore.energy import EnergyMeter, format_energy
from cropcore.inference.devices import cpu_has_native_bf16
from cropcore.models import build_model
from cropcore.models.conv import Conv3d

sys.path.insert(0, str(Path(__file__).parent))
from bench_infer import ceiling  # the same matmul ceiling as the inference benchmark


def default_dispatch(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose convolutions are plain ``nn.Conv3d`` (same weights)."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, Conv3d):
            module.__class__ = torch.nn.Conv3d
    return plain


def measure(model: torch.nn.Module, x: torch.Tensor, bf16: bool, repeats: int) -> tuple[float, float]:
    """(fastest, median) seconds of one forward pass."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def energy(model: torch.nn.Module, x: torch.Tensor, bf16: bool, seconds: float) -> dict:
    """Average power, J per patch and method of forward passes repeated for at least ``seconds``."""
    passes = 0
    with (torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
          EnergyMeter("forward") as meter):
        end = time.perf_counter() + seconds
        while passes == 0 or time.perf_counter() < end:
            model(x)
            passes += 1
    record = meter.record.per(images=passes * x.shape[0], image_kind="patch")
    print(f"  {format_energy(record)}", flush=True)
    if not record.measured:
        return {"energy": record.manifest()}
    return {"watts": round(record.watts, 2), "j_per_patch": round(record.joules_per_image or 0.0, 4),
            "energy": record.manifest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--energy-seconds", type=float, default=3.0,
                        help="length of each row's energy loop (0: no energy)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/model_agrunet_cpu.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model("agrunet", in_channels=10, num_classes=10, widths=tuple(args.widths)).eval()
    native_bf16 = cpu_has_native_bf16()
    ceilings = {"fp32": ceiling(torch.float32), **({"bf16": ceiling(torch.bfloat16)} if native_bf16 else {})}
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg_1min_before": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "model": "agrunet",
        "kwargs": {"in_channels": 10, "num_classes": 10, "widths": list(model.widths)},
        "params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # AVX2, AVX512, ...
        "native_bf16": native_bf16,
        "ceiling_gflops": ceilings,
        "runs": [],
    }
    print(f"ceilings (GFLOP/s): {ceilings}", flush=True)
    variants = [("fp32", model, False), ("fp32 default dispatch", default_dispatch(model), False)]
    if native_bf16:
        variants.append(("bf16", model, True))
    for t in (12, 40):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            variants[1][1](torch.randn(1, t, 10, 128, 128))  # the counter knows aten.convolution, not oneDNN's op
        gflop = counter.get_total_flops() / 1e9
        for batch in args.batches:
            x = torch.randn(batch, t, 10, 128, 128)
            for name, net, bf16 in variants:
                fastest, median = measure(net, x, bf16, args.repeats)
                rate = batch / fastest
                run = {"T": t, "batch": batch, "path": name, "gflop_per_patch": round(gflop, 2),
                       "patches_per_s": round(rate, 3), "patches_per_s_median": round(batch / median, 3),
                       "gflop_per_s": round(gflop * rate, 1),
                       "share_of_ceiling": round(gflop * rate / ceilings["bf16" if bf16 else "fp32"], 3)}
                if args.energy_seconds > 0:
                    run |= energy(net, x, bf16, args.energy_seconds)
                result["runs"].append(run)
                print(json.dumps(run), flush=True)
    result["loadavg_1min_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"params {result['params']:,}; wrote {args.out}")


if __name__ == "__main__":
    main()
