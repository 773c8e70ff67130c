"""On-the-fly augmentation of patch batches (B, C, H, W): dihedral flips/rotations, mixup and CutMix.

Labels are soft targets (B, K) for BCE; mixing returns the mixed targets directly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def dihedral(x: Tensor, *, flips: bool = True, rot90: bool = True) -> Tensor:
    """Each patch flipped horizontally / vertically (p = 0.5 each) and turned by k x 90 degrees (k uniform)."""
    out = x.clone()
    for i in range(len(x)):
        patch = out[i]
        if flips and torch.rand(()) < 0.5:
            patch = patch.flip(-1)
        if flips and torch.rand(()) < 0.5:
            patch = patch.flip(-2)
        if rot90 and patch.shape[-1] == patch.shape[-2]:
            patch = torch.rot90(patch, int(torch.randint(4, ())), dims=(-2, -1))
        out[i] = patch
    return out


def mixup(x: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Mix each patch and its targets with a shuffled partner, weight ``lam`` ~ Beta(alpha, alpha)."""
    lam = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(len(x), device=x.device)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def cutmix(x: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Paste a box of a shuffled partner into each patch; targets mixed by the box's area share."""
    lam = float(np.random.beta(alpha, alpha))
    h, w = x.shape[-2:]
    bh, bw = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
    top, left = np.random.randint(0, h - bh + 1), np.random.randint(0, w - bw + 1)
    perm = torch.randperm(len(x), device=x.device)
    out = x.clone()
    out[..., top:top + bh, left:left + bw] = x[perm][..., top:top + bh, left:left + bw]
    share = bh * bw / (h * w)
    return out, (1 - share) * y + share * y[perm]


def augment_batch(x: Tensor, y: Tensor, *, flips: bool = True, rot90: bool = True, mixup_alpha: float = 0.0,
                  cutmix_alpha: float = 0.0) -> tuple[Tensor, Tensor]:
    """Dihedral transforms, then mixup or CutMix (one of the two at random when both are on)."""
    x = dihedral(x, flips=flips, rot90=rot90)
    mixers = [(mixup, mixup_alpha), (cutmix, cutmix_alpha)]
    mixers = [(f, a) for f, a in mixers if a > 0]
    if mixers:
        fn, alpha = mixers[np.random.randint(len(mixers))]
        x, y = fn(x, y, alpha)
    return x, y
