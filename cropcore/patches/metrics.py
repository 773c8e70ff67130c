"""Patch metrics on torchmetrics: multi-label (micro/macro F1, mAP, per-class F1 at thresholds tuned on
validation) and binary (accuracy, precision, recall, F1, ROC-AUC, ROC curve, confusion matrix), plus the
majority-class baselines they are compared with."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryConfusionMatrix,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    BinaryROC,
    MultilabelAveragePrecision,
    MultilabelF1Score,
)

GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def tune_thresholds(probs: np.ndarray, target: np.ndarray) -> list[float]:
    """Per column, the threshold on :data:`GRID` with the best F1 on (validation) ``probs``; 0.5 for a column
    without a positive."""
    out = []
    for k in range(probs.shape[1]):
        if target[:, k].sum() == 0:
            out.append(0.5)
            continue
        f1 = [_f1(probs[:, k] > t, target[:, k] > 0.5) for t in GRID]  # ">" as torchmetrics
        out.append(float(GRID[int(np.argmax(f1))]))
    return out


def recall_threshold(probs: np.ndarray, target: np.ndarray, recall: float = 1.0) -> float:
    """The highest threshold on :data:`GRID` at which (validation) recall is at least ``recall`` (0.0 if none):
    for a gate that must not miss positives."""
    truth = target > 0.5
    ok = [t for t in GRID if (probs[truth] > t).mean() >= recall] if truth.any() else []
    return float(max(ok)) if ok else 0.0


def gate_report(probs: np.ndarray, target: np.ndarray, threshold: float) -> dict[str, float]:
    """What a gate skipping patches scored at most ``threshold`` does: recall of the positives it keeps and
    the share of all patches it skips."""
    truth, keep = target > 0.5, probs > threshold
    return {"threshold": threshold, "recall": float(keep[truth].mean()) if truth.any() else float("nan"),
            "skipped_share": float(1 - keep.mean())}


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = float((pred & truth).sum())
    return 2 * tp / max(1.0, float(pred.sum() + truth.sum()))


def multilabel_report(probs: np.ndarray, target: np.ndarray, thresholds: list[float],
                      class_names: list[str]) -> dict[str, Any]:
    """Micro/macro F1 at ``thresholds``, mAP (macro over classes with a positive) and per-class F1/support.

    Macro F1 and mAP average over classes present in ``target`` only (absent classes have no defined score).
    """
    p, t = torch.as_tensor(probs).float(), torch.as_tensor(target).round().long()
    k = t.shape[1]
    pred = (p > torch.tensor(thresholds)).long()
    present = t.sum(0) > 0
    per_f1 = MultilabelF1Score(num_labels=k, average="none", threshold=0.5)(pred.float(), t)
    with warnings.catch_warnings():  # absent classes: AP undefined, reported as None below
        warnings.filterwarnings("ignore", message="No positive samples found")
        ap = MultilabelAveragePrecision(num_labels=k, average="none")(p, t)
    return {
        "n": len(t),
        "micro_f1": float(MultilabelF1Score(num_labels=k, average="micro", threshold=0.5)(pred.float(), t)),
        "macro_f1": float(per_f1[present].mean()),
        "map": float(ap[present].mean()),
        "per_class": {name: {"f1": float(per_f1[i]), "ap": float(ap[i]) if present[i] else None,
                             "threshold": thresholds[i], "support": int(t[:, i].sum())}
                      for i, name in enumerate(class_names)},
    }


def binary_report(probs: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 at ``threshold``, ROC-AUC, the ROC curve and the confusion matrix
    (rows = truth not/agri, columns = prediction)."""
    p, t = torch.as_tensor(probs).float().reshape(-1), torch.as_tensor(target).round().long().reshape(-1)
    kw = {"threshold": threshold}
    both = 0 < int(t.sum()) < len(t)
    report: dict[str, Any] = {
        "n": len(t), "positives": int(t.sum()), "threshold": threshold,
        "accuracy": float(BinaryAccuracy(**kw)(p, t)), "precision": float(BinaryPrecision(**kw)(p, t)),
        "recall": float(BinaryRecall(**kw)(p, t)), "f1": float(BinaryF1Score(**kw)(p, t)),
        "roc_auc": float(BinaryAUROC()(p, t)) if both else None,
        "confusion_matrix": BinaryConfusionMatrix(**kw)(p, t).tolist(),
    }
    if both:
        fpr, tpr, _ = BinaryROC()(p, t)
        report["roc"] = {"fpr": [round(float(v), 4) for v in fpr], "tpr": [round(float(v), 4) for v in tpr]}
    return report


def majority_multilabel(train_target: np.ndarray, test_target: np.ndarray, class_names: list[str]) -> dict:
    """The majority baseline: each class predicted present iff present in most training patches; its scores
    are the training frequencies (so mAP is what a constant ranking gets)."""
    freq = train_target.mean(0)
    probs = np.repeat(freq[None], len(test_target), 0)
    return multilabel_report(probs, test_target, [0.5] * len(class_names), class_names)


def majority_binary(train_target: np.ndarray, test_target: np.ndarray) -> dict:
    """The majority baseline: every patch gets the training majority class (score = training prevalence)."""
    share = float(np.mean(train_target))
    probs = np.full(len(test_target), share)
    return binary_report(probs, test_target, threshold=0.5 if share >= 0.5 else 1.0)


def roc_png(report: dict[str, Any], path: str | Path, title: str) -> Path:
    """Save the ROC curve of a :func:`binary_report` as a PNG (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    roc = report.get("roc")
    if roc:
        ax.plot(roc["fpr"], roc["tpr"], label=f"AUC {report['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title=title, xlim=(0, 1),
           ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
