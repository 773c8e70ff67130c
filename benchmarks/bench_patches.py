"""Throughput of the patch classifiers (12 bands, 120 x 120 px) on this machine, against the matmul ceiling,
and data-parallel training with 1 vs 2 processes.

Usage: ``python benchmarks/bench_patches.py [--repeats 5] [--ddp] [--out benchmarks/results/patches_cpu.json]``
(or ``python -m cropcore bench patches``).

For each model (ResNet-50 at the shipped width 16 and at the original width 64, the small CNN, the CNN-ViT):
parameters, GFLOP per patch (``torch.utils.flop_counter``: convolutions and matmuls, 2 x MACs; training =
forward + backward), *inference* patches/s (forward in ``torch.inference_mode``, batch 32) and *training*
patches/s (forward, BCE, backward, SGD step, batch 16), each the fastest of ``--repeats`` timed calls after a
warm-up, and the share of the fp32 ceiling (fastest of 7 2048^3 matmuls, as ``bench_model.py``), measured again
just before each model's row so that on a shared machine both see about the same load.
``--ddp``: the shipped small CNN trained through Lightning (``cropcore.patches.train.fit``) with 1 and with 2
processes (gloo), same per-process batch; patches/s over all processes after 2 warm-up steps. The 1-minute
load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cropcore.patches.registry import build_patch_model

sys.path.insert(0, str(Path(__file__).parent))
from bench_infer import ceiling  # the same matmul ceiling as the other benchmarks

MODELS = {
    "resnet50 (width 16, shipped)": ("resnet50", {"num_classes": 19, "width": 16}),
    "resnet50 (width 64, original)": ("resnet50", {"num_classes": 19, "width": 64}),
    "small_cnn (shipped)": ("small_cnn", {"num_classes": 1, "width": 16}),
    "cnn_vit (shipped)": ("cnn_vit", {"num_classes": 1}),
}


def fastest(step: Callable[[], None], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``step`` after one warm-up call."""
    step()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def gflop(model: torch.nn.Module, x: torch.Tensor, train: bool) -> float:
    """GFLOP per patch of a forward (``train``: forward + backward) pass of ``x`` (batch 1)."""
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if train:
            out.sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9 / len(x)


def steps(model: torch.nn.Module, device: str, batch_infer: int, batch_train: int,
          dtype: torch.dtype | None = None) -> tuple[Callable[[], None], Callable[[], None]]:
    """(inference step, training step) of ``model`` on random patches on ``device``; autocast to ``dtype``."""
    x_inf = torch.randn(batch_infer, 12, 120, 120, device=device)
    x_train = torch.randn(batch_train, 12, 120, 120, device=device)
    outputs = model(x_train[:1]).shape[1]
    y = torch.rand(batch_train, outputs, device=device).round()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    kind = torch.device(device).type

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), torch.autocast(kind, dtype=dtype, enabled=dtype is not None):
            model(x_inf)

    def train() -> None:
        model.train()
        with torch.autocast(kind, dtype=dtype, enabled=dtype is not None):
            loss = F.binary_cross_entropy_with_logits(model(x_train).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return infer, train


def model_rows(repeats: int) -> list[dict]:
    rows = []
    for label, (name, kwargs) in MODELS.items():
        ceiling_gflops = ceiling(torch.float32)
        torch.manual_seed(0)
        model = build_patch_model(name, in_channels=12, **kwargs)
        x1 = torch.randn(1, 12, 120, 120)
        g_inf, g_train = gflop(model.eval(), x1, False), gflop(model.train(), x1.repeat(2, 1, 1, 1), True)
        infer, train = steps(model, "cpu", 32, 16)
        rate_inf, rate_train = 32 / fastest(infer, repeats), 16 / fastest(train, repeats)
        row = {"model": label, "params": sum(p.numel() for p in model.parameters()),
               "ceiling_gflops_fp32": round(ceiling_gflops, 1),
               "gflop_per_patch_inference": round(g_inf, 3), "gflop_per_patch_training": round(g_train, 3),
               "inference_patches_per_s": round(rate_inf, 1), "training_patches_per_s": round(rate_train, 1),
               "inference_share_of_ceiling": round(g_inf * rate_inf / ceiling_gflops, 3),
               "training_share_of_ceiling": round(g_train * rate_train / ceiling_gflops, 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def ddp_rows(max_steps: int) -> list[dict]:
    """Lightning training of the small CNN with 1 and 2 gloo processes (same per-process batch of 16)."""
    from cropcore.patches.config import load_patch_config
    from cropcore.patches.data import read_npz
    from cropcore.patches.ddp import StepTimer, ddp_strategy
    from cropcore.patches.train import fit
    from cropcore.settings import PROJECT_ROOT

    config = load_patch_config(PROJECT_ROOT / "configs" / "patch_smallcnn_agri.yaml")
    config = dataclasses.replace(config, trainer={**config.trainer, "max_epochs": 100})
    data = read_npz()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for world in (1, 2):
            path = Path(tmp) / f"timer{world}.json"
            strategy = ddp_strategy("cpu", spawn=True) if world > 1 else "auto"
            fit(config, data, devices=world, strategy=strategy, callbacks=[StepTimer(path)], max_steps=max_steps)
            rows.append({"processes": world, **json.loads(path.read_text())})
            print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row["speedup"] = round(row["patches_per_s"] / rows[0]["patches_per_s"], 3)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ddp", action="store_true", help="also time Lightning training with 1 vs 2 processes")
    parser.add_argument("--ddp-steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "patches_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg_1min_before": os.getloadavg()[0], "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "patch": "12 x 120 x 120",
    }
    result["models"] = model_rows(args.repeats)
    if args.ddp:
        result["ddp"] = ddp_rows(args.ddp_steps)
    result["loadavg_1min_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
