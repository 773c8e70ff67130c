"""Data-parallel training on CPUs or GPUs: :func:`ddp_strategy` and :class:`ReplicaCheck`, a callback that
measures whether the replicas stay identical (gradients after DDP's all-reduce, weights at the end)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy


def ddp_strategy(accelerator: str = "cpu", *, spawn: bool = False) -> DDPStrategy:
    """DDP over gloo on CPUs (NCCL on GPUs); ``spawn`` starts the processes with ``multiprocessing`` (from
    Python, e.g. tests) instead of re-running the command line."""
    backend = "gloo" if accelerator == "cpu" else "nccl"
    return DDPStrategy(process_group_backend=backend, start_method="spawn" if spawn else "popen")


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().float().flatten() for t in tensors])


class ReplicaCheck(pl.Callback):
    """Writes to ``path`` (rank 0, JSON): the world size, the LR used, the steps taken, the largest difference
    between ranks of the gradients before each optimiser step and of the weights at the end, and whether the
    ranks were fed different patches."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.grad_diff, self.steps, self.inputs_differ = 0.0, 0, False

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: object,
                             batch_idx: int) -> None:
        checksum = trainer.strategy.all_gather(batch[0].double().sum()).reshape(-1)
        self.inputs_differ |= bool((checksum != checksum[0]).any())

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        grads = trainer.strategy.all_gather(_flat([p.grad for p in module.parameters() if p.grad is not None]))
        grads = grads.reshape(trainer.world_size, -1)
        self.grad_diff = max(self.grad_diff, float((grads - grads[0]).abs().max()))
        self.steps += 1

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        weights = trainer.strategy.all_gather(_flat(list(module.parameters()))).reshape(trainer.world_size, -1)
        if trainer.is_global_zero:
            self.path.write_text(json.dumps({
                "world": trainer.world_size, "lr": getattr(module, "lr", None), "steps": self.steps,
                "grad_max_diff": self.grad_diff, "weight_max_diff": float((weights - weights[0]).abs().max()),
                "inputs_differ": self.inputs_differ,
            }))


class StepTimer(pl.Callback):
    """Writes to ``path`` (rank 0, JSON) the training throughput after ``skip`` warm-up steps: patches per
    second over all ranks (``world x patches this rank trained on x / seconds``; ranks get equal shards)."""

    def __init__(self, path: str | Path, skip: int = 2) -> None:
        self.path, self.skip = Path(path), skip
        self.steps, self.patches, self.start = 0, 0, 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: object,
                             batch_idx: int) -> None:
        self.steps += 1
        if self.steps == self.skip + 1:
            self.start = time.perf_counter()
        if self.steps > self.skip:
            self.patches += len(batch[0])

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self.start
        if trainer.is_global_zero and self.patches:
            self.path.write_text(json.dumps({
                "world": trainer.world_size, "timed_steps": self.steps - self.skip, "seconds": seconds,
                "patches_per_process": self.patches,
                "patches_per_s": trainer.world_size * self.patches / seconds}))
