"""The Lightning module :class:`CropModule`: loss with deep supervision, augmentation, mixup, LR schedule.

Mixed precision is bf16 on CPUs with native bf16 (fp32 on the others, where bf16 is emulated and many times
slower) and bf16 (or fp16 with Lightning's GradScaler where bf16 is unsupported) on CUDA
(:func:`precision_for`). The learning rate is ``lr * world_size * batch_size / base_batch_size`` with a
linear warm-up and cosine decay (:func:`lr_lambda`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor

from cropcore.inference.devices import cpu_has_native_bf16
from cropcore.models import build_model, uses_location
from cropcore.training.augment import Augment, augment, mixup
from cropcore.training.metrics import metric_collection


def lr_lambda(step: int, *, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def precision_for(accelerator: str) -> str:
    """On CUDA bf16 where supported, else fp16 (Lightning adds a GradScaler); on CPU bf16 autocast where the
    CPU computes bf16 natively, else fp32."""
    if accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


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
        augment: dict[str, Any] | None = None,
        norm: tuple[list[float], list[float]] | None = None,
        mixup_alpha: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_model(model, **model_kwargs)
        num_classes = model_kwargs["num_classes"]
        self.register_buffer("class_w", torch.tensor(class_weights) if class_weights else None)
        self.augment = Augment.from_config(augment)
        self.register_buffer("norm_mean", torch.tensor(norm[0]) if norm else None)
        self.register_buffer("norm_std", torch.tensor(norm[1]) if norm else None)
        self.location = uses_location(model)
        if norm and hasattr(self.net, "set_input_norm"):  # models that undo the z-scoring inside (Presto)
            self.net.set_input_norm(*norm)
        self.val_metrics = metric_collection(num_classes).clone(prefix="val_")

    def forward(self, x: Tensor, mask: Tensor, latlon: Tensor | None = None) -> Tensor:
        """The network's output; ``latlon`` (B, 2) reaches only models that use location."""
        return self.net(x, mask, latlon=latlon) if self.location else self.net(x, mask)

    def _loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), y, weight=self.class_w, ignore_index=-1,
                               label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, mask, y, *rest = batch
        hp = self.hparams
        x, mask, y = augment(x, mask, y, self.augment, mean=self.norm_mean, std=self.norm_std)
        perm, lam = None, 1.0
        if hp.mixup_alpha > 0:
            x, mask, perm, lam = mixup(x, mask, hp.mixup_alpha)
        out = self(x, mask, rest[0] if rest else None)
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

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        x, mask, y, *rest = batch
        self.val_metrics.update(self(x, mask, rest[0] if rest else None).float(), y)

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


def fit_best(module: CropModule, datamodule: pl.LightningDataModule, directory: str | Path, *, max_epochs: int,
             accelerator: str = "auto", devices: str | int = "auto", callbacks: Sequence[pl.Callback] = (),
             resume: str | None = None, **trainer_kwargs: Any) -> tuple[CropModule, pl.Trainer]:
    """Train deterministically (precision from :func:`precision_for`) and return the epoch with the best validation
    macro-F1 (the module as trained when no epoch was kept, e.g. ``fast_dev_run``) with its trainer."""
    best = ModelCheckpoint(dirpath=directory, monitor="val_macro_f1", mode="max", save_last=True)
    trainer = pl.Trainer(accelerator=accelerator, devices=devices, precision=precision_for(accelerator),
                         max_epochs=max_epochs, callbacks=[best, *callbacks], default_root_dir=directory,
                         deterministic=True, enable_progress_bar=False, logger=False, **trainer_kwargs)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    if best.best_model_path and trainer.is_global_zero:
        module = CropModule.load_from_checkpoint(best.best_model_path, map_location="cpu", weights_only=False)
    return module, trainer
