"""Training: Lightning module and data modules, the RandomForest baseline, and the shipped checkpoint.

``python -m cropcore train --config configs/<name>.yaml`` calls :func:`run`. Mixed precision is bf16 on
CPU and bf16 (or fp16 with Lightning's GradScaler where bf16 is unsupported) on CUDA; more than one
device trains with DDP. The learning rate is ``lr * world_size * batch_size / base_batch_size`` with a
linear warm-up and cosine decay. Pixel models train on point series; patch models (AgrUNet) train on
composed, semi-synthetic patches (``data.patches`` in the config, see :mod:`cropcore.data.composed`)
built from the same split by sample id, and both are scored on the same held-out real points.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint
from sklearn.ensemble import RandomForestClassifier
from torch import Tensor
from torch.utils.data import DataLoader

from cropcore.data.composed import ComposedPatches
from cropcore.data.dl4sits import read_dl4sits
from cropcore.data.pastis import PASTIS_BANDS, PASTIS_CLASSES, PastisDataModule, collate_patches
from cropcore.data.points import PointDataset, PointSeries, concat, norm_stats, prepare, split_by_sample
from cropcore.data.worldcereal import read_worldcereal
from cropcore.errors import ConfigError
from cropcore.legend import CROP_LEGEND
from cropcore.models import build_model, save_checkpoint
from cropcore.settings import PROJECT_ROOT, data_dir, home
from cropcore.training.evaluation import predict_series
from cropcore.training.metrics import classification_report, metric_collection


@dataclass(frozen=True)
class TrainConfig:
    """A training run, as read from YAML (paths relative to the sample-data directory)."""

    name: str
    model: str
    model_kwargs: dict[str, Any]
    data: dict[str, Any]
    optim: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    output: str | None = None


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML training config; unknown or missing keys raise :class:`ConfigError`."""
    raw = yaml.safe_load(Path(path).read_text())
    try:
        return TrainConfig(**raw)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def read_points(kind: str, path: str | Path) -> PointSeries:
    """Read labelled point series of ``kind`` ("worldcereal" or "dl4sits")."""
    readers = {"worldcereal": read_worldcereal, "dl4sits": read_dl4sits}
    if kind not in readers:
        raise ConfigError(f"data kind must be one of {sorted(readers)}, got {kind!r}")
    return readers[kind](path).labelled()


class PointDataModule(pl.LightningDataModule):
    """Point time series split by sample id into train/val/test; normalisation from the train split."""

    def __init__(
        self,
        kind: str,
        paths: list[str],
        *,
        test_path: str | None = None,
        split: tuple[float, float, float] = (0.7, 0.1, 0.2),
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        root = data_dir()
        series = concat([read_points(kind, root / p) for p in paths])
        if test_path is not None:  # a published test file: the training files give train and val only
            split = (split[0] / (split[0] + split[1]), split[1] / (split[0] + split[1]), 0.0)
        train, val, test = split_by_sample(series.sample_id, tuple(split), seed=seed)
        self.test = read_points(kind, root / test_path) if test_path else series.subset(test)
        self.train, self.val = series.subset(train), series.subset(val)
        self.mean, self.std = norm_stats(self.train.x)

    def _loader(self, series: PointSeries, shuffle: bool) -> DataLoader:
        return DataLoader(PointDataset(series, self.mean, self.std), batch_size=self.hparams.batch_size,
                          shuffle=shuffle, num_workers=self.hparams.num_workers, drop_last=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, False)

    def class_weights(self, num_classes: int) -> list[float]:
        """Inverse-frequency weights of the train split (clipped to [0.2, 5])."""
        counts = np.bincount(self.train.y, minlength=num_classes).astype(float)
        weights = len(self.train.y) / (num_classes * np.maximum(counts, 1))
        return np.clip(weights, 0.2, 5.0).tolist()


class ComposedDataModule(PointDataModule):
    """Semi-synthetic patches composed from the point split: train patches use only train samples, etc."""

    def __init__(
        self,
        kind: str,
        paths: list[str],
        *,
        size: int = 32,
        parcels: tuple[int, int] = (3, 12),
        noise: float = 0.03,
        train_patches: int = 512,
        eval_patches: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(kind, paths, **kwargs)
        seed = self.hparams.seed

        def patches(series: PointSeries, n: int, offset: int) -> ComposedPatches:
            return ComposedPatches(series, self.mean, self.std, n_patches=n, size=size,
                                   parcels=tuple(parcels), noise=noise, seed=seed + offset)

        self.train_patches = patches(self.train, train_patches, 0)
        self.val_patches = patches(self.val, eval_patches, 1)
        self.test_patches = patches(self.test, eval_patches, 2)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_patches, batch_size=self.hparams.batch_size, shuffle=True,
                          num_workers=self.hparams.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_patches, batch_size=self.hparams.batch_size)

    def class_weights(self, num_classes: int) -> list[float]:
        """Inverse-frequency weights of the training patches' pixels (epoch 0; clipped to [0.2, 5])."""
        counts = np.zeros(num_classes)
        for i in range(len(self.train_patches)):
            parcel, rows = self.train_patches.layout(i)
            counts += np.bincount(self.train.y[rows][parcel].ravel(), minlength=num_classes)
        weights = counts.sum() / (num_classes * np.maximum(counts, 1))
        return np.clip(weights, 0.2, 5.0).tolist()


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


def precision_for(accelerator: str) -> str:
    """bf16 autocast on CPU; on CUDA bf16 where supported, else fp16 (Lightning adds a GradScaler)."""
    if accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed"


def random_forest(train: PointSeries, test: PointSeries, mean: list[float], std: list[float], *,
                  seed: int) -> Tensor:
    """Fit a RandomForest on the same prepared features (flattened series + mask); test probabilities."""
    def features(series: PointSeries) -> np.ndarray:
        x, mask = prepare(series, mean, std)
        return np.concatenate([x.reshape(len(x), -1), mask], axis=1)

    rf = RandomForestClassifier(n_estimators=500, n_jobs=2, random_state=seed, class_weight="balanced")
    rf.fit(features(train), train.y)
    probs = np.zeros((len(test), len(train.class_names)), np.float32)
    probs[:, rf.classes_] = rf.predict_proba(features(test))
    return torch.from_numpy(probs)


def datamodule(config: TrainConfig) -> PointDataModule | PastisDataModule:
    """The data module of a config: point series, composed patches (``data.patches``) or PASTIS folds."""
    data = config.data
    if data["kind"] == "pastis":
        return PastisDataModule(data["root"], test_fold=data.get("test_fold", 1),
                                batch_size=data.get("batch_size", 4))
    common = {"test_path": data.get("test_path"), "split": tuple(data.get("split", (0.7, 0.1, 0.2))),
              "batch_size": data.get("batch_size", 32), "seed": config.seed}
    if "patches" in data:
        return ComposedDataModule(data["kind"], data["paths"], **data["patches"], **common)
    return PointDataModule(data["kind"], data["paths"], **common)


def run(config: TrainConfig, *, resume: str | None = None, devices: str | int = "auto",
        fast_dev_run: bool = False) -> dict[str, Any]:
    """Train, test on the held-out split, compare with a RandomForest, and write the checkpoint + results.

    ``results["network"]`` and ``results["random_forest"]`` are scored on the held-out real points; a patch
    model also gets ``results["network_patches"]``, pixel metrics on held-out composed patches. PASTIS runs
    only have ``results["network_patches"]``, pixel metrics on the test fold.
    """
    pl.seed_everything(config.seed, workers=True)
    start = time.perf_counter()
    dm = datamodule(config)
    num_classes = config.model_kwargs["num_classes"]
    weights = dm.class_weights(num_classes) if config.optim.get("class_weights", True) else None
    optim = {k: v for k, v in config.optim.items() if k != "class_weights"}
    module = CropModule(config.model, config.model_kwargs, batch_size=dm.hparams.batch_size,
                        class_weights=weights, **optim, **config.augment)
    run_dir = home() / "runs" / config.name
    ckpt = ModelCheckpoint(dirpath=run_dir, monitor="val_macro_f1", mode="max", save_last=True)
    accelerator = config.trainer.get("accelerator", "auto")
    trainer = pl.Trainer(
        accelerator=accelerator, devices=devices, precision=precision_for(accelerator),
        max_epochs=config.trainer.get("max_epochs", 50), callbacks=[ckpt], default_root_dir=run_dir,
        deterministic=True, enable_progress_bar=False, logger=False, fast_dev_run=fast_dev_run,
        log_every_n_steps=10,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=resume)
    if fast_dev_run or not trainer.is_global_zero:
        return {}
    if ckpt.best_model_path:
        module = CropModule.load_from_checkpoint(ckpt.best_model_path, weights_only=False)
    train_seconds = time.perf_counter() - start
    net = module.net.eval()
    if isinstance(dm, PastisDataModule):
        results = {"network_patches": score_patches(net, dm.test_set, list(PASTIS_CLASSES[:num_classes])),
                   "patch_data": f"PASTIS test fold {dm.hparams.test_fold}",
                   "train_seconds": round(train_seconds, 1),
                   "sizes": {"train": len(dm.train_set), "val": len(dm.val_set), "test": len(dm.test_set)}}
        if config.output:
            save_checkpoint(PROJECT_ROOT / config.output, net, pastis_meta(config, dm, results))
        (run_dir / "results.json").write_text(json.dumps(results, indent=2))
        return results
    patch_size = dm.hparams.size if isinstance(dm, ComposedDataModule) else None
    x, mask = prepare(dm.test, dm.mean, dm.std)
    names = list(dm.train.class_names)
    crop = [i for i, c in enumerate(CROP_LEGEND) if c.is_crop] if config.data["kind"] == "worldcereal" else None
    y_test = torch.from_numpy(dm.test.y)
    results = {
        "network": classification_report(predict_series(net, x, mask, patch_size=patch_size), y_test, names,
                                         crop_classes=crop),
        "random_forest": classification_report(random_forest(dm.train, dm.test, dm.mean, dm.std, seed=config.seed),
                                               y_test, names, crop_classes=crop),
        "train_seconds": round(train_seconds, 1),
        "sizes": {"train": len(dm.train), "val": len(dm.val), "test": len(dm.test)},
    }
    if isinstance(dm, ComposedDataModule):
        results["network_patches"] = score_patches(net, dm.test_patches, names, crop_classes=crop)
        results["patch_data"] = "composed patches (semi-synthetic layouts, real series)"
    if config.output:
        meta = checkpoint_meta(config, dm, results)
        save_checkpoint(PROJECT_ROOT / config.output, net, meta)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def score_patches(model: torch.nn.Module, patches: torch.utils.data.Dataset, names: list[str], *,
                  crop_classes: list[int] | None = None) -> dict[str, Any]:
    """Pixel metrics of a patch model on a fixed set of (composed or PASTIS) patches."""
    loader = DataLoader(patches, batch_size=16, collate_fn=collate_patches)
    probs, targets = [], []
    with torch.inference_mode():
        for x, mask, y in loader:
            probs.append(torch.softmax(model(x, mask).float(), dim=1))
            targets.append(y)
    return classification_report(torch.cat(probs), torch.cat(targets), names, crop_classes=crop_classes)


def checkpoint_meta(config: TrainConfig, dm: PointDataModule, results: dict[str, Any]) -> dict[str, Any]:
    """JSON-able metadata stored with the shipped weights."""
    if config.data["kind"] == "worldcereal":
        legend = [{"id": i, "name": c.name, "color": c.color, "is_crop": c.is_crop} for i, c in enumerate(CROP_LEGEND)]
    else:
        legend = [{"id": i, "name": n, "color": "#808080", "is_crop": None} for i, n in enumerate(dm.train.class_names)]
    meta = {
        "name": config.name,
        "model": config.model,
        "model_kwargs": config.model_kwargs,
        "bands": list(dm.train.bands),
        "time_axis": {"kind": "season_months" if config.data["kind"] == "worldcereal" else "dates",
                      "steps": list(dm.train.time_axis)},
        "norm": {"mean": dm.mean, "std": dm.std, "units": "reflectance (DN / 10000)"},
        "legend": legend,
        "data_kind": config.data["kind"],
        "test_sample_ids": sorted(map(str, np.unique(dm.test.sample_id))) if "test_path" not in config.data else [],
        "metrics": {k: {m: results[k][m] for m in ("oa", "macro_f1")} for k in ("network", "random_forest")},
    }
    if isinstance(dm, ComposedDataModule):
        meta["patch_size"] = dm.hparams.size
        meta["training_data"] = ("semi-synthetic: Voronoi field layouts filled with real labelled WorldCereal "
                                 "series (cropcore.data.composed); metrics.network is on real held-out points "
                                 "(uniform patches), metrics.network_patches on held-out composed patches")
        meta["metrics"]["network_patches"] = {m: results["network_patches"][m] for m in ("oa", "macro_f1")}
    return meta


def pastis_meta(config: TrainConfig, dm: PastisDataModule, results: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint metadata of a PASTIS run; ``norm`` converted to reflectance (PASTIS stores DN)."""
    k = config.model_kwargs["num_classes"]
    return {
        "name": config.name,
        "model": config.model,
        "model_kwargs": config.model_kwargs,
        "bands": list(PASTIS_BANDS),
        "time_axis": {"kind": "dates", "steps": [], "note": "any dates; padded dates are masked"},
        "norm": {"mean": (dm.train_set.mean / 1e4).tolist(), "std": (dm.train_set.std / 1e4).tolist(),
                 "units": "reflectance (DN / 10000)"},
        "legend": [{"id": i, "name": n, "color": "#808080", "is_crop": None} for i, n in enumerate(PASTIS_CLASSES[:k])],
        "data_kind": "pastis",
        "test_fold": dm.hparams.test_fold,
        "metrics": {"network_patches": {m: results["network_patches"][m] for m in ("oa", "macro_f1")}},
    }
