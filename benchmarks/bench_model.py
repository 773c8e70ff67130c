"""Parameters, FLOPs and CPU throughput of AgrUNet on 128 x 128 x 10-band patches, batch 1.

Usage: ``python benchmarks/bench_model.py [--repeats 5] [--widths 16 32 64 128] [--out FILE.json]``.
FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (2 x multiply-accumulates, convolutions and
matmuls only); throughput is the median of ``--repeats`` timed forward passes after two warm-ups, in
``torch.inference_mode`` with and without bf16 autocast. The 1-minute load average before and after is
recorded: on a shared machine it says how much the numbers can be trusted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cropcore.inference.devices import cpu_has_native_bf16
from cropcore.models import build_model


def measure(model: torch.nn.Module, t: int, dtype: str, repeats: int) -> float:
    x = torch.randn(1, t, 10, 128, 128)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        for _ in range(2):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/model_agrunet_cpu.json"))
    args = parser.parse_args()
    model = build_model("agrunet", in_channels=10, num_classes=10, widths=tuple(args.widths)).eval()
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
        "native_bf16": cpu_has_native_bf16(),  # without it bf16 is emulated (see inference.devices)
        "runs": [],
    }
    for t in (12, 40):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(torch.randn(1, t, 10, 128, 128))
        gflop = counter.get_total_flops() / 1e9
        for dtype in ("fp32", "bf16"):
            rate = measure(model, t, dtype, args.repeats)
            run = {"T": t, "dtype": dtype, "gflop": round(gflop, 2), "patches_per_s": round(rate, 3),
                   "gflop_per_s": round(gflop * rate, 1)}
            result["runs"].append(run)
            print(json.dumps(run))
    result["loadavg_1min_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"params {result['params']:,}; wrote {args.out}")


if __name__ == "__main__":
    main()
