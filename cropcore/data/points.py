"""Labelled pixel time series held in memory, with gap filling and normalisation helpers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from cropcore.cube.preprocess import fill_gaps_np


@dataclass(frozen=True)
class PointSeries:
    """``x`` (N, T, C) reflectance with NaN where missing, ``y`` (N,) class index (-1 = unlabelled), ``latlon``
    (N, 2) latitude and longitude in degrees where the source gives them."""

    x: np.ndarray
    y: np.ndarray
    sample_id: np.ndarray
    bands: tuple[str, ...]
    time_axis: tuple[str, ...]
    class_names: tuple[str, ...]
    latlon: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> PointSeries:
        """Rows ``index`` (bool mask or integer index)."""
        return PointSeries(self.x[index], self.y[index], self.sample_id[index], self.bands, self.time_axis,
                           self.class_names, None if self.latlon is None else self.latlon[index])

    def labelled(self) -> PointSeries:
        """Rows with a class in the legend and at least one observation."""
        keep = (self.y >= 0) & np.isfinite(self.x).all(axis=2).any(axis=1)
        return self.subset(keep)


def concat(parts: list[PointSeries]) -> PointSeries:
    """Stack point series with the same bands, time axis and legend (``latlon`` only when every part has it)."""
    first = parts[0]
    latlon = None if any(p.latlon is None for p in parts) else np.concatenate([p.latlon for p in parts])
    return PointSeries(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                       np.concatenate([p.sample_id for p in parts]), first.bands, first.time_axis,
                       first.class_names, latlon)


def fill_gaps(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate missing steps of (N, T, C) along time (nearest value at the ends).

    Returns the filled array (0 where a series has no value at all) and a (N, T) mask that is False only
    for series with no observation at all.
    """
    steps = np.arange(x.shape[1])
    out = np.moveaxis(fill_gaps_np(np.moveaxis(x.astype(np.float32), 1, 0), steps), 0, 1)
    mask = np.isfinite(out).all(axis=2)
    return np.nan_to_num(out, nan=0.0), mask


def norm_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-band mean and std of (N, T, C) over finite values."""
    flat = x.reshape(-1, x.shape[-1])
    return np.nanmean(flat, axis=0).tolist(), (np.nanstd(flat, axis=0) + 1e-6).tolist()


def prepare(series: PointSeries, mean: list[float], std: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Gap-fill and normalise: returns float32 (N, T, C) inputs and bool (N, T) mask."""
    filled, mask = fill_gaps(series.x)
    z = (filled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return (z * mask[..., None]).astype(np.float32), mask


class PointDataset(Dataset):
    """Normalised pixel time series as ``(x (T, C), mask (T,), y)`` tensors, with ``latlon (2,)`` (float32
    degrees) appended when the series has locations."""

    def __init__(self, series: PointSeries, mean: list[float], std: list[float]) -> None:
        x, mask = prepare(series, mean, std)
        self.x = torch.from_numpy(x)
        self.mask = torch.from_numpy(mask)
        self.y = torch.from_numpy(series.y.astype(np.int64))
        self.latlon = None if series.latlon is None else torch.from_numpy(series.latlon.astype(np.float32))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        if self.latlon is None:
            return self.x[i], self.mask[i], self.y[i]
        return self.x[i], self.mask[i], self.y[i], self.latlon[i]


def split_by_sample(
    sample_id: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean train/val/test masks that keep every sample id on one side only."""
    ids = np.unique(sample_id)
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    n_train = round(fractions[0] * len(ids))
    n_val = round(fractions[1] * len(ids))
    groups = ids[:n_train], ids[n_train : n_train + n_val], ids[n_train + n_val :]
    return tuple(np.isin(sample_id, g) for g in groups)  # type: ignore[return-value]
