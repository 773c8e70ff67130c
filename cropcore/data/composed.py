"""Composed (semi-synthetic) patches: generated field layouts filled with real labelled pixel time series.

The real labels here are points without spatial neighbourhood, so patch models (AgrUNet) cannot be trained
on them directly. A composed patch is a seeded Voronoi partition of a ``size x size`` grid into parcels;
each parcel takes the gap-filled reflectance series of one real labelled sample, and every pixel gets
small multiplicative noise. **The spatial layout is synthetic; only the spectra and labels are real.**
Build train, validation and test patches from disjoint sample sets (the pixel models' split by sample id)
so that no field's series appears on both sides.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from cropcore.data.points import PointSeries, fill_gaps
from cropcore.errors import ShapeError


def voronoi_layout(size: int, n_parcels: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) parcel index of each pixel: the nearest of ``n_parcels`` random seed points."""
    seeds = rng.uniform(0, size, (n_parcels, 2))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dist = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    return dist.argmin(-1)


class ComposedPatches(Dataset):
    """``n_patches`` semi-synthetic patches ``(x (T, C, H, W), mask (T,), y (H, W))`` from ``series``.

    Patch ``i`` is a pure function of ``(seed, epoch, i)``; :meth:`set_epoch` draws new layouts and
    parcel series for the next epoch (training), a fixed epoch gives a fixed set (validation, test).
    ``noise`` is the standard deviation of the per-pixel multiplicative reflectance noise.
    """

    def __init__(
        self,
        series: PointSeries,
        mean: list[float],
        std: list[float],
        *,
        n_patches: int,
        size: int = 32,
        parcels: tuple[int, int] = (3, 12),
        noise: float = 0.03,
        seed: int = 0,
    ) -> None:
        if len(series) == 0:
            raise ShapeError("composed patches need at least one labelled series")
        filled, mask = fill_gaps(series.x)
        self.filled = filled
        self.mask = mask
        self.y = series.y.astype(np.int64)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.n_patches = n_patches
        self.size = size
        self.parcels = parcels
        self.noise = noise
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the layouts of ``epoch`` from now on."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_patches

    def layout(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Parcel map (H, W) and the sample row of each parcel for patch ``index``."""
        rng = np.random.default_rng((self.seed, self.epoch, index))
        n = int(rng.integers(self.parcels[0], self.parcels[1] + 1))
        return voronoi_layout(self.size, n, rng), rng.integers(0, len(self.y), n)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        if not 0 <= index < self.n_patches:
            raise IndexError(index)
        parcel, rows = self.layout(index)
        rng = np.random.default_rng((self.seed, self.epoch, index, 1))
        series = self.filled[rows][parcel]  # (H, W, T, C)
        noisy = series * (1 + self.noise * rng.standard_normal(series.shape, dtype=np.float32))
        z = ((noisy - self.mean) / self.std).transpose(2, 3, 0, 1)  # (T, C, H, W)
        mask = self.mask[rows].all(0)
        z = z * mask[:, None, None, None]
        return torch.from_numpy(np.ascontiguousarray(z, np.float32)), torch.from_numpy(mask), torch.from_numpy(
            self.y[rows][parcel])


def uniform_patches(x: Tensor, mask: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """One (T, C, size, size) patch per prepared point series ``x`` (N, T, C): the series in every pixel.

    How a patch model is scored on real point data: the field covers the whole patch, and the point's
    prediction is the mean of the pixel probabilities.
    """
    return x[..., None, None].expand(*x.shape, size, size), mask
