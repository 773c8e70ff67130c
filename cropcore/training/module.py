"""The Lightning module :class:`CropModule`: loss with deep supervision, augmentation, mixup, LR schedule.

Mixed precision is bf16 on CPU and bf16 (or fp16 with Lightning's GradScaler where bf16 is unsupported) on
CUDA (:func:`precision_for`). The learning rate is ``lr * world_size * batch_size / base_batch_size`` with a
linear warm-up and cosine decay (:func:`lr_lambda`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from cropcore.models import build_model
from cropcore.training.metrics import metric_collection


def augment(x: Tensor, mask: Tensor, y: Tensor, *, date_dropout: float = 0.0, jitter: int = 0,
            flips: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Random date dropout, temporal jitter (roll by up to ``jitter`` steps) and, for patches, flips/rot90."""
    if date_dropout > 0:
        mask = mask & (torch.rand(mask.shape, device=mask.device) >= date_dropout)
    if jitter > 0:
        shift = int(torch.randint(-jitter, jitter + 1, ()))
        x, mask = x.roll(shift, dims=1), mask.roll(shift, dims=1)
    if flips and x.ndim == 5:
        if torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        k = int(torch.randint(0, 4, ()))
        x, y = x.rot90(k, dims=(-2, -1)), y.rot90(k, dims=(-2, -1))
    shape = (*mask.shape, *([1] * (x.ndim - 2)))
    return x * mask.reshape(shape).to(x.dtype), mask, y


def mixup(x: Tensor, mask: Tensor, alpha: float) -> tuple[Tensor, Tensor, Tensor, float]:
    """Mix each sample with a shuffled partner (weight ``lam`` ~ Beta(alpha, alpha), at least 0.5).

    Returns the mixed inputs, the union of both masks, the partner order and ``lam``; the loss is
    ``lam * loss(y) + (1 - lam) * loss(y[perm])``.
    """
    lam = float(np.random.beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)
    perm = torch.randperm(x.shape[0], device=x.device)
    return lam * x + (1 - lam) * x[perm], mask | mask[perm], perm, lam


def lr_lambda(step: int, *, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def precision_for(accelerator: str) -> str:
    """bf16 autocast on CPU; on CUDA bf16 where supported, else fp16 (Lightning adds a GradScaler)."""
    if accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed"


class CropModule(pl.LightningModule):
    """Classifier training for pixel (B, T, C) or patch (B, T, C, H, W) models with deep supervision."""

    def __init__(
        self,
        model: str,
        model_kwargs: dict[str, Any],
        *,
        lr: float = 1e-3,
        base_batch_size: int = 32,
        batch_size: int = 32,
        weight_decay: float = 1e-4,
        warmup_frac: float = 0.05,
        class_weights: list[float] | None = None,
        aux_weights: tuple[float, ...] = (0.5, 0.25),
        date_dropout: float = 0.0,
        jitter: int = 0,
        flips: bool = True,
        mixup_alpha: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_model(model, **model_kwargs)
        num_classes = model_kwargs["num_classes"]
        self.register_buffer("class_w", torch.tensor(class_weights) if class_weights else None)
        self.val_metrics = metric_collection(num_classes).clone(prefix="val_")

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.net(x, mask)

    def _loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), y, weight=self.class_w, ignore_index=-1,
                               label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        x, mask, y = batch
        hp = self.hparams
        x, mask, y = augment(x, mask, y, date_dropout=hp.date_dropout, jitter=hp.jitter, flips=hp.flips)
        perm, lam = None, 1.0
        if hp.mixup_alpha > 0:
            x, mask, perm, lam = mixup(x, mask, hp.mixup_alpha)
        out = self.net(x, mask)
        logits, aux = (out if isinstance(out, tuple) else (out, []))

        def loss_of(z: Tensor) -> Tensor:
            loss = self._loss(z, y)
            return loss if perm is None else lam * loss + (1 - lam) * self._loss(z, y[perm])

        loss = loss_of(logits)
        for weight, aux_logits in zip(hp.aux_weights, aux, strict=False):
            loss = loss + weight * loss_of(aux_logits)
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)
        return loss

    def on_train_epoch_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):  # composed patches: new layouts every epoch
            dataset.set_epoch(self.current_epoch)

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        x, mask, y = batch
        self.val_metrics.update(self.net(x, mask).float(), y)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        world = self.trainer.world_size if self._trainer is not None else 1
        lr = hp.lr * world * hp.batch_size / hp.base_batch_size
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(hp.warmup_frac * total))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, warmup=warmup, total=total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
