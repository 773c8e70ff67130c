"""The Lightning module :class:`PatchModule` with the reference recipe of Sedona et al. (2019): SGD with
momentum, learning rate ``base_lr x k x n / reference_batch`` (k processes, n patches per process and step),
linear warm-up over ``warmup_epochs`` then step decay by ``gamma`` at each of ``milestones`` (epochs), BCE
on (mixed) soft targets, on-the-fly flips / rot90 / mixup / CutMix."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from cropcore.patches.augment import augment_batch
from cropcore.patches.registry import build_patch_model


def scaled_lr(base_lr: float, world: int, batch_size: int, reference_batch: int = 256) -> float:
    """The linear scaling rule: ``base_lr x world x batch_size / reference_batch``."""
    return base_lr * world * batch_size / reference_batch


def lr_factor(step: int, *, steps_per_epoch: int, warmup_epochs: float, milestones: list[int],
              gamma: float) -> float:
    """Multiplier of the scaled LR at optimiser step ``step``: linear warm-up, then ``gamma`` per milestone."""
    warmup = warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    epoch = step // max(1, steps_per_epoch)
    return gamma ** sum(epoch >= m for m in milestones)


class PatchModule(pl.LightningModule):
    """Trains a registered patch classifier on z-scored patches with BCE (multi-label or one agri logit)."""

    def __init__(self, model: str, model_kwargs: dict[str, Any], *, mean: list[float], std: list[float],
                 batch_size: int, base_lr: float = 0.1, reference_batch: int = 256, momentum: float = 0.9,
                 weight_decay: float = 1e-4, warmup_epochs: float = 5, milestones: tuple[int, ...] = (30, 60),
                 gamma: float = 0.1, augment: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_patch_model(model, **model_kwargs)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.augment = dict(augment or {})
        self.lr = float("nan")  # set by configure_optimizers: the scaled LR actually used

    def forward(self, x: Tensor) -> Tensor:
        """Logits of reflectance patches (B, C, H, W)."""
        return self.net((x - self.mean) / self.std)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        x, y = augment_batch(x, y, **self.augment)
        loss = F.binary_cross_entropy_with_logits(self(x).float(), y)
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)
        return loss

    def on_train_epoch_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        world = self.trainer.world_size if self._trainer is not None else 1
        self.lr = scaled_lr(hp.base_lr, world, hp.batch_size, hp.reference_batch)
        decay = [p for p in self.parameters() if p.ndim > 1]
        no_decay = [p for p in self.parameters() if p.ndim <= 1]
        opt = torch.optim.SGD([{"params": decay, "weight_decay": hp.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=self.lr, momentum=hp.momentum)
        steps = max(1, int(self.trainer.estimated_stepping_batches) // max(1, self.trainer.max_epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(
            s, steps_per_epoch=steps, warmup_epochs=hp.warmup_epochs, milestones=list(hp.milestones),
            gamma=hp.gamma))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
