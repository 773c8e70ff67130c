"""Classification and segmentation metrics on torchmetrics.

:func:`classification_report` returns OA, macro-F1, per-class precision/recall/F1, mIoU, Dice (macro F1
over pixels equals Dice), the confusion matrix and the expected calibration error; given which classes are
crops, the ROC-AUC of the summed crop probability against crop / non-crop truth, the crop vs non-crop
balanced accuracy and the recall of each side. With a ``cropland_threshold`` classes are decided cropland
first (:func:`~cropcore.training.calibration.two_level`), as the maps do; otherwise by argmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

from cropcore.training.calibration import expected_calibration_error, two_level


def metric_collection(num_classes: int, *, ignore_index: int | None = -1) -> MetricCollection:
    """Metrics to track during training (OA, macro-F1, mIoU)."""
    kw = {"num_classes": num_classes, "ignore_index": ignore_index}
    return MetricCollection(
        {
            "oa": MulticlassAccuracy(average="micro", **kw),
            "macro_f1": MulticlassF1Score(average="macro", **kw),
            "miou": MulticlassJaccardIndex(average="macro", **kw),
        }
    )


def classification_report(
    probs: torch.Tensor,
    target: torch.Tensor,
    class_names: Sequence[str],
    *,
    crop_classes: Sequence[int] | None = None,
    cropland_threshold: float | None = None,
    ignore_index: int = -1,
) -> dict[str, Any]:
    """Metrics for probabilities ``probs`` (N, K) or (B, K, H, W) against ``target`` (N,) or (B, H, W)."""
    k = len(class_names)
    if probs.ndim == 4:
        probs = probs.permute(0, 2, 3, 1).reshape(-1, k)
        target = target.reshape(-1)
    keep = target != ignore_index
    probs, target = probs[keep].float(), target[keep].long()
    two = crop_classes is not None and cropland_threshold is not None
    pred = two_level(probs, crop_classes, cropland_threshold) if two else probs.argmax(1)  # type: ignore[arg-type]
    kw = {"num_classes": k}
    per_p = MulticlassPrecision(average="none", **kw)(pred, target)
    per_r = MulticlassRecall(average="none", **kw)(pred, target)
    per_f = MulticlassF1Score(average="none", **kw)(pred, target)
    present = torch.bincount(target, minlength=k) > 0
    report: dict[str, Any] = {
        "n": int(target.numel()),
        "oa": float(MulticlassAccuracy(average="micro", **kw)(pred, target)),
        "macro_f1": float(per_f[present].mean()),
        "miou": float(MulticlassJaccardIndex(average="none", **kw)(pred, target)[present].mean()),
        "dice": float(per_f[present].mean()),
        "per_class": {
            name: {"precision": float(per_p[i]), "recall": float(per_r[i]), "f1": float(per_f[i]),
                   "support": int((target == i).sum())}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": MulticlassConfusionMatrix(**kw)(pred, target).tolist(),
        "class_names": list(class_names),
        "ece": expected_calibration_error(probs, target),
    }
    if crop_classes is not None:
        ids = torch.tensor(list(crop_classes))
        is_crop, said_crop = torch.isin(target, ids), torch.isin(pred, ids)
        if 0 < int(is_crop.sum()) < len(is_crop):
            report["crop_auc"] = float(BinaryAUROC()(probs[:, list(crop_classes)].sum(1), is_crop.long()))
            report["crop_recall"] = float((said_crop & is_crop).sum() / is_crop.sum())
            report["noncrop_recall"] = float((~said_crop & ~is_crop).sum() / (~is_crop).sum())
            report["crop_balanced_accuracy"] = (report["crop_recall"] + report["noncrop_recall"]) / 2
    return report


def format_report(report: dict[str, Any]) -> str:
    """Plain-text summary: headline numbers, per-class table and confusion matrix (rows = truth)."""
    head = f"n={report['n']}  OA={report['oa']:.3f}  macro-F1={report['macro_f1']:.3f}"
    lines = [f"{head}  mIoU={report['miou']:.3f}"]
    if "crop_auc" in report:
        lines[0] += (f"  crop-AUC={report['crop_auc']:.3f}"
                     f"  crop/non-crop bal.acc={report['crop_balanced_accuracy']:.3f}"
                     f"  non-crop recall={report['noncrop_recall']:.3f}")
    if "ece" in report:
        lines[0] += f"  ECE={report['ece']:.3f}"
    width = max(len(n) for n in report["class_names"])
    lines.append(f"{'class':<{width}}  prec   rec    F1     n")
    for name, m in report["per_class"].items():
        scores = f"{m['precision']:.3f}  {m['recall']:.3f}  {m['f1']:.3f}"
        lines.append(f"{name:<{width}}  {scores}  {m['support']}")
    lines.append("confusion matrix (rows = truth, columns = prediction):")
    lines += ["  " + " ".join(f"{v:4d}" for v in row) for row in report["confusion_matrix"]]
    return "\n".join(lines)
