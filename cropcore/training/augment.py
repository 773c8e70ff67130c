"""On-the-fly augmentation of (B, T, C) series and (B, T, C, H, W) patches, and mixup.

Every option of :class:`Augment` is off by default and set per config (``augment:`` in the YAML). The temporal
ones imitate a season that comes early or late (``shift``), runs fast or slow (``stretch``) or is seen on fewer
dates (``date_dropout``); the spectral ones a sensor or atmosphere that differs (``band_noise``, ``brightness``).
Brightness acts on reflectance, so it needs the normalisation (``mean``/``std``) of the inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cropcore.errors import ConfigError


@dataclass(frozen=True)
class Augment:
    """Augmentation settings; ``from_config`` rejects unknown keys."""

    date_dropout: float = 0.0  # probability of hiding each date
    shift: int = 0  # shift the season by up to this many steps (vacated steps are masked)
    stretch: float = 0.0  # resample the time axis by a factor in [1 - stretch, 1 + stretch] about its centre
    band_noise: float = 0.0  # Gaussian noise, in standard deviations of each band
    brightness: float = 0.0  # multiply each sample's reflectance by a factor in [1 - b, 1 + b] (per band)
    flips: bool = False  # patches: random flip and rot90

    @classmethod
    def from_config(cls, raw: dict[str, Any] | None) -> Augment:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw or {}) - known)
        if unknown:
            raise ConfigError(f"unknown augment option(s) {unknown}; valid: {sorted(known)}")
        return cls(**(raw or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _per_sample(x: Tensor, values: Tensor) -> Tensor:
    """Broadcast (B,) or (B, C) ``values`` over (B, T, C[, H, W]) ``x``."""
    shape = [x.shape[0], 1, values.shape[1] if values.ndim == 2 else 1] + [1] * (x.ndim - 3)
    return values.reshape(shape)


def _shift(x: Tensor, mask: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Move the series ``steps`` later (negative: earlier); the steps left empty are masked out."""
    if steps == 0:
        return x, mask
    x, mask = x.roll(steps, dims=1), mask.roll(steps, dims=1).clone()
    if steps > 0:
        mask[:, :steps] = False
    else:
        mask[:, steps:] = False
    return x, mask


def _stretch(x: Tensor, mask: Tensor, factor: float) -> tuple[Tensor, Tensor]:
    """Linearly resample the time axis by ``factor`` about its centre; steps mapped outside are masked."""
    t = x.shape[1]
    centre = (t - 1) / 2
    src = centre + (torch.arange(t, dtype=torch.float32, device=x.device) - centre) / factor
    inside = (src >= 0) & (src <= t - 1)
    lo = src.clamp(0, t - 1).floor().long()
    hi = (lo + 1).clamp(max=t - 1)
    w = (src.clamp(0, t - 1) - lo).to(x.dtype)
    w = w.reshape(1, t, *([1] * (x.ndim - 2)))
    out = x[:, lo] * (1 - w) + x[:, hi] * w
    new_mask = mask[:, lo] & mask[:, hi] & inside
    return out, new_mask


def augment(x: Tensor, mask: Tensor, y: Tensor, options: Augment, *, mean: Tensor | None = None,
            std: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Apply ``options`` to a batch of normalised inputs ``x`` with date ``mask`` and labels ``y``."""
    o = options
    if o.shift > 0:
        x, mask = _shift(x, mask, int(torch.randint(-o.shift, o.shift + 1, ())))
    if o.stretch > 0:
        x, mask = _stretch(x, mask, 1.0 + float(torch.empty(()).uniform_(-o.stretch, o.stretch)))
    if o.date_dropout > 0:
        mask = mask & (torch.rand(mask.shape, device=mask.device) >= o.date_dropout)
    if o.brightness > 0:
        if mean is None or std is None:
            raise ConfigError("augment.brightness needs the band normalisation (mean/std)")
        b, c = x.shape[0], x.shape[2]
        gain = 1.0 + torch.empty(b, c, device=x.device).uniform_(-o.brightness, o.brightness)
        m, s = _per_sample(x, mean.to(x)[None].expand(b, c)), _per_sample(x, std.to(x)[None].expand(b, c))
        x = ((x * s + m) * _per_sample(x, gain) - m) / s
    if o.band_noise > 0:
        x = x + o.band_noise * torch.randn_like(x)
    if o.flips and x.ndim == 5:
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
