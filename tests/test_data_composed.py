"""Composed (semi-synthetic) patches from real WorldCereal series: layouts, values, labels, split by sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cropcore.data.composed import ComposedPatches, uniform_patches, voronoi_layout
from cropcore.data.points import fill_gaps, norm_stats
from cropcore.data.worldcereal import read_worldcereal
from cropcore.errors import ShapeError
from cropcore.settings import data_dir
from cropcore.training import ComposedDataModule

WC = "worldcereal/2023_FRA_LPIS_POLY_110_dekad.geoparquet"


@pytest.fixture(scope="module")
def series():
    return read_worldcereal(data_dir(WC) / WC).labelled()


def test_voronoi_layout_is_seeded_and_uses_every_parcel_index_range():
    a = voronoi_layout(32, 6, np.random.default_rng(1))
    b = voronoi_layout(32, 6, np.random.default_rng(1))
    assert a.shape == (32, 32) and np.array_equal(a, b)
    assert set(np.unique(a)) <= set(range(6)) and len(np.unique(a)) >= 2


def test_patches_hold_the_real_series_with_small_noise_and_their_labels(series):
    mean, std = norm_stats(series.x)
    ds = ComposedPatches(series, mean, std, n_patches=4, size=16, parcels=(2, 5), noise=0.02, seed=7)
    x, mask, y = ds[2]
    assert x.shape == (12, 9, 16, 16) and mask.shape == (12,) and y.shape == (16, 16)
    parcel, rows = ds.layout(2)
    filled, _ = fill_gaps(series.x)
    assert torch.equal(y, torch.from_numpy(series.y[rows][parcel]))
    reflectance = x.numpy().transpose(2, 3, 0, 1) * np.asarray(std) + np.asarray(mean)  # (H, W, T, C)
    source = filled[rows][parcel]
    assert np.abs(reflectance - source).max() < 0.15 * np.abs(source).max()
    assert not np.allclose(reflectance, source, atol=1e-6)  # pixels carry noise
    assert torch.equal(ds[2][0], x)  # a pure function of (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[2][2], y) or not torch.equal(ds[2][0], x)
    with pytest.raises(IndexError):
        ds[4]


def test_datamodule_keeps_train_and_test_samples_apart():
    dm = ComposedDataModule("worldcereal", paths=[WC], size=16, train_patches=20, eval_patches=5, batch_size=4)
    train_ids = {sid for i in range(20) for sid in dm.train.sample_id[dm.train_patches.layout(i)[1]]}
    test_ids = {sid for i in range(5) for sid in dm.test.sample_id[dm.test_patches.layout(i)[1]]}
    assert train_ids and test_ids and not train_ids & test_ids
    assert not train_ids & set(dm.test.sample_id) and not test_ids & set(dm.train.sample_id)
    x, _, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 12, 9, 16, 16) and y.dtype == torch.int64
    assert len(dm.class_weights(6)) == 6


def test_uniform_patches_and_empty_input(series):
    x = torch.randn(3, 12, 9)
    patches, _ = uniform_patches(x, torch.ones(3, 12, dtype=torch.bool), 8)
    assert patches.shape == (3, 12, 9, 8, 8) and torch.equal(patches[1, :, :, 5, 2], x[1])
    with pytest.raises(ShapeError):
        ComposedPatches(series.subset(np.zeros(len(series), bool)), [0] * 9, [1] * 9, n_patches=1)
