"""Calibrated confidence: temperature scaling, expected calibration error, reliability curves, and the
thresholds stored in a checkpoint's :class:`~cropcore.models.Calibration`.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar fitted on validation data by
minimising the negative log-likelihood; it changes confidences, never the argmax.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cropcore.inference.calibrate import cropland_first

BINS = 15


def fit_temperature(logits: Tensor, target: Tensor) -> float:
    """The temperature in [0.05, 20] minimising the validation NLL of ``logits`` (N, K) for ``target`` (N,)."""
    logits, target = logits.float(), target.long()
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def reliability(probs: Tensor, target: Tensor, bins: int = BINS) -> dict[str, list[float]]:
    """Top-label reliability curve: mean confidence, accuracy and count per equal-width confidence bin."""
    conf, pred = probs.float().max(dim=1)
    correct = (pred == target).float()
    index = (conf * bins).long().clamp(max=bins - 1)
    count = torch.bincount(index, minlength=bins).float()
    mean_conf = torch.bincount(index, conf, minlength=bins) / count.clamp(min=1)
    accuracy = torch.bincount(index, correct, minlength=bins) / count.clamp(min=1)
    keep = count > 0
    return {"confidence": mean_conf[keep].tolist(), "accuracy": accuracy[keep].tolist(),
            "count": count[keep].int().tolist()}


def expected_calibration_error(probs: Tensor, target: Tensor, bins: int = BINS) -> float:
    """Top-label ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    curve = reliability(probs, target, bins)
    n = sum(curve["count"])
    if n == 0:
        return float("nan")
    gaps = (abs(a - c) * k for a, c, k in zip(curve["accuracy"], curve["confidence"], curve["count"], strict=True))
    return float(sum(gaps) / n)


def confidence_for_precision(conf: Tensor, correct: Tensor, precision: float) -> float:
    """The smallest threshold on the decided class's confidence ``conf`` at which the kept pixels (confidence
    >= it) are ``correct`` at least ``precision`` of the time; 1.0 when no threshold reaches it."""
    order = conf.argsort(descending=True)
    correct = correct[order].float()
    running = correct.cumsum(0) / torch.arange(1, len(correct) + 1)
    ok = (running >= precision).nonzero().flatten()
    if len(ok) == 0:
        return 1.0
    return float(conf[order][ok.max()])


def cropland_threshold(probs: Tensor, target: Tensor, crop_ids: Sequence[int]) -> float:
    """The threshold on p(any crop class) maximising crop vs non-crop balanced accuracy (0.5 if one side is
    absent from ``target``)."""
    ids = torch.tensor(list(crop_ids))
    p_crop, is_crop = probs[:, ids].sum(1), torch.isin(target, ids)
    if is_crop.all() or not is_crop.any():
        return 0.5
    candidates = torch.linspace(0.05, 0.95, 91)
    scores = torch.stack([(((p_crop >= t) & is_crop).float().sum() / is_crop.sum()
                           + ((p_crop < t) & ~is_crop).float().sum() / (~is_crop).sum()) / 2 for t in candidates])
    best = scores.max()
    chosen = candidates[scores >= best - 1e-9]
    return round(float(chosen[len(chosen) // 2]), 3)  # the middle of the best plateau


def two_level(probs: Tensor, crop_ids: Sequence[int], threshold: float) -> Tensor:
    """Class decision with cropland first, as the maps decide (:func:`cropcore.inference.calibrate.cropland_first`):
    ``probs`` (N, K, ...) -> (N, ...) class ids."""
    classes = cropland_first(probs.detach().cpu().movedim(1, 0).numpy(), list(crop_ids), threshold)
    return torch.from_numpy(np.ascontiguousarray(classes)).to(probs.device)
