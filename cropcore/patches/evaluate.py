"""Scoring a patch checkpoint on labelled patches (npz or BigEarthNet folders): what ``python -m cropcore
evaluate --checkpoint patch_... --data ...`` runs. ``split="test"`` keeps the patches the checkpoint held out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cropcore.errors import DatasetFormatError
from cropcore.patches.data import CLASSES19, PatchSet, read_source
from cropcore.patches.metrics import binary_report, multilabel_report, roc_png
from cropcore.patches.predict import PatchClassifier


def _concat(sets: list[PatchSet]) -> PatchSet:
    return PatchSet(np.concatenate([s.x for s in sets]), np.concatenate([s.y19 for s in sets]),
                    np.concatenate([s.names for s in sets]))


def evaluate_patches(checkpoint: str | Path, data: list[str | Path], *, split: str = "all",
                     roc_path: str | Path | None = None) -> dict[str, Any]:
    """Metrics of ``checkpoint`` on ``data`` together; a binary model's ROC curve goes to ``roc_path`` (PNG)."""
    classifier = PatchClassifier(checkpoint)
    patches = _concat([read_source(p) for p in data])
    if split == "test":
        patches = patches.subset(np.isin(patches.names, classifier.meta.get("test_names", [])))
        if len(patches) == 0:
            raise DatasetFormatError(f"{data} holds none of the patches {checkpoint} held out")
    logits = classifier.logits(patches.x)
    probs = 1 / (1 + np.exp(-logits.numpy()))
    if classifier.meta["task"] == "binary":
        report = binary_report(probs[:, 0], patches.agri, classifier.threshold)
        if roc_path is not None and report.get("roc"):
            report["roc_png"] = str(roc_png(report, roc_path, f"{classifier.meta['name']} ({split})"))
    else:
        report = multilabel_report(probs, patches.y19, classifier.meta["thresholds"], list(CLASSES19))
    report.update({"checkpoint": str(checkpoint), "task": classifier.meta["task"], "split": split,
                   "data": [Path(p).name for p in data]})
    return report


def format_patch_report(report: dict[str, Any]) -> str:
    """Plain-text summary of :func:`evaluate_patches`."""
    if report["task"] == "binary":
        auc = "n/a" if report["roc_auc"] is None else f"{report['roc_auc']:.3f}"
        (tn, fp), (fn, tp) = report["confusion_matrix"]
        return (f"n={report['n']} (agricultural {report['positives']})  threshold={report['threshold']:.2f}  "
                f"accuracy={report['accuracy']:.3f}  precision={report['precision']:.3f}  "
                f"recall={report['recall']:.3f}  F1={report['f1']:.3f}  ROC-AUC={auc}\n"
                f"confusion matrix (rows = truth, columns = prediction; not agri, agri):\n"
                f"  {tn:4d} {fp:4d}\n  {fn:4d} {tp:4d}")
    lines = [f"n={report['n']}  micro-F1={report['micro_f1']:.3f}  macro-F1={report['macro_f1']:.3f}  "
             f"mAP={report['map']:.3f}", f"{'class':<40} thr    F1     AP     n"]
    for name, m in report["per_class"].items():
        ap = "  -  " if m["ap"] is None else f"{m['ap']:.3f}"
        lines.append(f"{name[:40]:<40} {m['threshold']:.2f}  {m['f1']:.3f}  {ap}  {m['support']}")
    return "\n".join(lines)
