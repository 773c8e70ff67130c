"""``python -m cropcore train --config configs/<name>.yaml``: :func:`run` trains, tests on the held-out split,
compares with the RandomForest baseline and writes the checkpoint and ``results.json``.

More than one device trains with DDP. Pixel models train on point series, patch models (AgrUNet) on composed
patches or PASTIS folds (:func:`~cropcore.training.datamodules.datamodule`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from cropcore.data.pastis import PASTIS_CLASSES, collate_patches
from cropcore.errors import ConfigError
from cropcore.legend import CROP_LEGEND
from cropcore.models import save_checkpoint, uses_location
from cropcore.settings import PROJECT_ROOT, home, models_dir
from cropcore.training.config import TrainConfig
from cropcore.training.datamodules import ComposedDataModule, PastisDataModule, datamodule
from cropcore.training.metadata import checkpoint_meta, pastis_meta
from cropcore.training.metrics import classification_report
from cropcore.training.module import CropModule, fit_best
from cropcore.training.scoring import TARGET_PRECISION, score_points


def run(config: TrainConfig, *, resume: str | None = None, devices: str | int = "auto",
        fast_dev_run: bool = False) -> dict[str, Any]:
    """Train, test on the held-out split, compare with a RandomForest, and write the checkpoint + results.

    ``results["network"]`` and ``results["random_forest"]`` are scored on the held-out real points after
    calibration on the validation split (:mod:`cropcore.training.scoring`; the network's goes into the
    checkpoint); a patch
    model also gets ``results["network_patches"]``, pixel metrics on held-out composed patches. PASTIS runs
    only have ``results["network_patches"]``, pixel metrics on the test fold.
    """
    pl.seed_everything(config.seed, workers=True)
    start = time.perf_counter()
    dm = datamodule(config)
    num_classes = config.model_kwargs["num_classes"]
    weights = dm.class_weights(num_classes) if config.optim.get("class_weights", True) else None
    optim = {k: v for k, v in config.optim.items() if k != "class_weights"}
    norm = (dm.mean, dm.std) if hasattr(dm, "mean") else None
    aug = dict(config.augment)
    module = CropModule(config.model, config.model_kwargs, batch_size=dm.hparams.batch_size,
                        class_weights=weights, augment=aug, mixup_alpha=aug.pop("mixup_alpha", 0.0), norm=norm,
                        **optim)
    if config.init:
        if not hasattr(module.net, "load_pretrained"):
            raise ConfigError(f"{config.model} cannot start from pretrained weights (init: {config.init})")
        module.net.load_pretrained(models_dir(config.init) / config.init)
    run_dir = home() / "runs" / config.name
    module, trainer = fit_best(module, dm, run_dir, max_epochs=config.trainer.get("max_epochs", 50),
                               accelerator=config.trainer.get("accelerator", "auto"), devices=devices, resume=resume,
                               fast_dev_run=fast_dev_run, log_every_n_steps=10)
    if fast_dev_run or not trainer.is_global_zero:
        return {}
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
    names = list(dm.train.class_names)
    crop = [i for i, c in enumerate(CROP_LEGEND) if c.is_crop] if config.data["kind"] == "worldcereal" else None
    scores, calibration = score_points(net, dm.train, dm.val, dm.test, mean=dm.mean, std=dm.std, crop=crop,
                                       seed=config.seed, patch_size=patch_size,
                                       location=uses_location(config.model),
                                       precision=config.calibration.get("precision", TARGET_PRECISION))
    results = {**scores, "train_seconds": round(train_seconds, 1),
               "sizes": {"train": len(dm.train), "val": len(dm.val), "test": len(dm.test)},
               "test_regions": {str(r): int((dm.test_region == r).sum()) for r in np.unique(dm.test_region)}}
    if isinstance(dm, ComposedDataModule):
        results["network_patches"] = score_patches(net, dm.test_patches, names, crop_classes=crop)
        results["patch_data"] = "composed patches (semi-synthetic layouts, real series)"
    if config.output:
        save_checkpoint(PROJECT_ROOT / config.output, net, checkpoint_meta(config, dm, results, calibration))
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def score_patches(model: torch.nn.Module, patches: Dataset, names: list[str], *,
                  crop_classes: list[int] | None = None) -> dict[str, Any]:
    """Pixel metrics of a patch model on a fixed set of (composed or PASTIS) patches."""
    loader = DataLoader(patches, batch_size=16, collate_fn=collate_patches)
    probs, targets = [], []
    with torch.inference_mode():
        for x, mask, y in loader:
            probs.append(torch.softmax(model(x, mask).float(), dim=1))
            targets.append(y)
    return classification_report(torch.cat(probs), torch.cat(targets), names, crop_classes=crop_classes)
