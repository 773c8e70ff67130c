"""Training patch classifiers through Lightning (:func:`fit`) and cross-validation by place (:func:`run`),
what ``python -m cropcore train --config configs/patch_*.yaml`` calls.

Each fold of :func:`~cropcore.patches.splits.group_folds` is the test set once, the next fold validation (the
decision thresholds are tuned there), the rest training; band statistics come from the training folds only.
The model of fold 0 is the shipped checkpoint (``output``), with its held-out patch names. The majority-class
baseline is scored on the same test folds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import Strategy

from cropcore.patches.config import PatchConfig
from cropcore.patches.data import BANDS, CLASSES19, PatchSet, read_source
from cropcore.patches.metrics import (
    binary_report,
    gate_report,
    majority_binary,
    majority_multilabel,
    multilabel_report,
    recall_threshold,
    roc_png,
    tune_thresholds,
)
from cropcore.patches.module import PatchModule
from cropcore.patches.splits import fold_split, group_folds, place_groups
from cropcore.patches.stream import PatchStream, band_stats, stream_loader
from cropcore.settings import PROJECT_ROOT, home
from cropcore.training.module import precision_for

#: Headline numbers averaged over folds, per task.
HEADLINE = {"multilabel": ("micro_f1", "macro_f1", "map"),
            "binary": ("accuracy", "precision", "recall", "f1", "roc_auc")}


def fit(config: PatchConfig, train: PatchSet, *, devices: int | str = 1, strategy: str | Strategy = "auto",
        callbacks: Sequence[pl.Callback] = (), max_steps: int = -1) -> tuple[PatchModule, pl.Trainer]:
    """Train ``config``'s model on ``train`` (streamed, sharded across ranks, flips/rot90/mixup/CutMix)."""
    trainer_cfg, optim = config.trainer, config.optim
    if trainer_cfg.get("threads"):
        torch.set_num_threads(int(trainer_cfg["threads"]))
    mean, std = band_stats([train])
    batch = int(config.data.get("batch_size", 16))
    module = PatchModule(config.model, config.model_kwargs, mean=mean, std=std, batch_size=batch,
                         augment=config.augment, **optim)
    stream = PatchStream([train], agri=config.task == "binary", shuffle=True, seed=config.seed, even=True)
    loader = stream_loader(stream, batch_size=batch, num_workers=int(config.data.get("num_workers", 0)))
    accelerator = trainer_cfg.get("accelerator", "cpu")
    trainer = pl.Trainer(accelerator=accelerator, devices=devices, strategy=strategy,
                         precision=precision_for(accelerator), max_epochs=int(trainer_cfg.get("max_epochs", 30)),
                         max_steps=max_steps, callbacks=list(callbacks), logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, deterministic=True, default_root_dir=home() / "runs" / config.name)
    trainer.fit(module, train_dataloaders=loader)
    return module, trainer


def predict_probs(module: PatchModule, data: PatchSet, batch_size: int = 32) -> np.ndarray:
    """Sigmoid probabilities (N, K) of reflectance patches."""
    module = module.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            out.append(torch.sigmoid(module(torch.from_numpy(data.x[start:start + batch_size])).float()))
    return torch.cat(out).numpy()


def _score(task: str, probs: np.ndarray, val: PatchSet, val_probs: np.ndarray, test: PatchSet,
           train: PatchSet) -> tuple[dict, dict, list[float]]:
    """(model report, majority baseline report, thresholds tuned on validation)."""
    names = list(CLASSES19)
    if task == "multilabel":
        thresholds = tune_thresholds(val_probs, val.y19)
        return (multilabel_report(probs, test.y19, thresholds, names),
                majority_multilabel(train.y19, test.y19, names), thresholds)
    thresholds = tune_thresholds(val_probs, val.agri[:, None])
    report = binary_report(probs[:, 0], test.agri, thresholds[0])
    report["gate"] = gate_report(probs[:, 0], test.agri, recall_threshold(val_probs[:, 0], val.agri))
    return report, majority_binary(train.agri, test.agri), thresholds


def _mean_sd(reports: list[dict], keys: Sequence[str]) -> dict[str, dict[str, float]]:
    out = {}
    for key in keys:
        values = [r[key] for r in reports if r.get(key) is not None]
        out[key] = {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values, ddof=1)), 4),
                    "folds": len(values)}
    return out


def run(config: PatchConfig, *, devices: int | str = 1) -> dict[str, Any]:
    """Cross-validate by place, save the fold-0 model as ``config.output`` and the results as JSON."""
    pl.seed_everything(config.seed, workers=True)
    data = read_source(config.data["source"])
    groups = place_groups(data.names, max_group=int(config.data.get("max_group", 12)),
                          gap=int(config.data.get("gap", 2)))
    k = int(config.data.get("folds", 5))
    folds = group_folds(groups, k, strata=data.agri, seed=config.seed)
    run_dir = home() / "runs" / config.name
    fold_results, pooled = [], np.zeros((len(data), 1 if config.task == "binary" else len(CLASSES19)))
    for fold in range(k):
        start = time.perf_counter()
        train_idx, val_idx, test_idx = fold_split(folds, fold)
        train, val, test = data.subset(train_idx), data.subset(val_idx), data.subset(test_idx)
        module, trainer = fit(config, train, devices=devices)
        if not trainer.is_global_zero:  # other DDP ranks only train: on to the next fold's training
            continue
        probs = predict_probs(module, test)
        pooled[test_idx] = probs
        report, baseline, thresholds = _score(config.task, probs, val, predict_probs(module, val), test, train)
        fold_results.append({"fold": fold, "sizes": {"train": len(train), "val": len(val), "test": len(test)},
                             "seconds": round(time.perf_counter() - start, 1), "model": report,
                             "majority": baseline, "thresholds": thresholds})
        print(f"fold {fold}: " + ", ".join(f"{key} {report[key]:.3f}" for key in HEADLINE[config.task]
                                           if report.get(key) is not None), flush=True)
        if fold == 0 and config.output:
            _save(config, module, report, thresholds, test.names, len(train))
    if not fold_results:
        return {}
    keys = HEADLINE[config.task]
    results = {
        "name": config.name, "task": config.task, "model": config.model, "model_kwargs": config.model_kwargs,
        "params": sum(p.numel() for p in module.net.parameters()), "patches": len(data), "folds": k,
        "groups": len(np.unique(groups)), "torch_threads": torch.get_num_threads(),
        "model_mean_sd": _mean_sd([f["model"] for f in fold_results], keys),
        "majority_mean_sd": _mean_sd([f["majority"] for f in fold_results], keys),
        "fold_results": fold_results,
    }
    if config.task == "binary":
        results["gate_mean_sd"] = _mean_sd([f["model"]["gate"] for f in fold_results],
                                           ("threshold", "recall", "skipped_share"))
        results["pooled_out_of_fold"] = binary_report(pooled[:, 0], data.agri, 0.5)
        roc_png(results["pooled_out_of_fold"], run_dir / "roc.png", f"{config.name} (pooled held-out folds)")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _save(config: PatchConfig, module: PatchModule, report: dict, thresholds: list[float],
          test_names: np.ndarray, n_train: int) -> Path:
    from cropcore.patches.checkpoint import save_patch_checkpoint

    meta = {
        "name": Path(config.output).stem, "architecture": config.model, "model_kwargs": config.model_kwargs,
        "task": config.task, "bands": list(BANDS),
        "classes": ["agricultural"] if config.task == "binary" else list(CLASSES19),
        "norm": {"mean": module.mean.flatten().tolist(), "std": module.std.flatten().tolist(),
                 "units": "reflectance (DN / 10000)"},
        "thresholds": thresholds, "threshold": thresholds[0] if config.task == "binary" else 0.5,
        "gate_threshold": report["gate"]["threshold"] if config.task == "binary" else None,
        "metrics_fold0": {k: v for k, v in report.items() if k not in ("roc", "per_class")},
        "test_names": [str(n) for n in test_names], "train_patches": n_train,
        "data": config.data["source"], "config": config.name, "store_fp16": config.store_fp16,
    }
    return save_patch_checkpoint(PROJECT_ROOT / config.output, module.net, meta, fp16=config.store_fp16)


def format_results(results: dict[str, Any]) -> str:
    """The cross-validation summary: mean ± sd per headline metric, model vs majority baseline."""
    lines = [f"{results['name']}: {results['model']} ({results['params']:,} parameters), {results['task']}, "
             f"{results['patches']} patches in {results['groups']} place groups, {results['folds']} folds",
             f"{'metric':<10} {'model':>16} {'majority':>16}"]
    for key, value in results["model_mean_sd"].items():
        base = results["majority_mean_sd"].get(key, {})
        base_text = f"{base['mean']:.3f} ± {base['sd']:.3f}" if base.get("folds") else "n/a"
        lines.append(f"{key:<10} {value['mean']:.3f} ± {value['sd']:.3f}   {base_text:>16}")
    if "gate_mean_sd" in results:
        gate = results["gate_mean_sd"]
        lines.append("gate (threshold keeping every agricultural validation patch): " + ", ".join(
            f"{k} {v['mean']:.3f} ± {v['sd']:.3f}" for k, v in gate.items()))
    return "\n".join(lines)
