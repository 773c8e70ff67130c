"""Streaming patches: every sample exactly once across DataLoader workers and DDP ranks; band statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cropcore.patches.data import read_npz
from cropcore.patches.stream import PatchStream, band_stats, stream_loader


@pytest.fixture(scope="module")
def parts():
    data = read_npz()
    return [data.subset(slice(0, 50)), data.subset(slice(50, 51)), data.subset(slice(51, 124))]


def _ids(batch_x: torch.Tensor) -> list[float]:
    return [round(float(v), 6) for v in batch_x[:, :, :2, :2].double().sum(dim=(1, 2, 3))]


@pytest.mark.parametrize(("world", "workers"), [(1, 1), (2, 1), (2, 2), (3, 2)])
def test_every_sample_exactly_once_across_workers_and_ranks(parts, world: int, workers: int) -> None:
    expected = sorted(_ids(torch.from_numpy(np.concatenate([p.x for p in parts]))))
    seen = []
    for rank in range(world):
        stream = PatchStream(parts, rank=rank, world=world)
        for x, y in stream_loader(stream, batch_size=8, num_workers=workers if workers > 1 else 0):
            assert y.shape[1] == 19
            seen += _ids(x)
    assert len(seen) == 124
    assert sorted(seen) == expected


def test_even_shards_pad_so_ranks_step_together(parts) -> None:
    counts = [sum(1 for _ in PatchStream(parts, rank=r, world=3, even=True, agri=True)) for r in range(3)]
    assert counts == [42, 42, 42]  # ceil(124 / 3)
    assert len(PatchStream(parts, rank=0, world=3, even=True)) == 42


def test_shuffle_changes_with_the_epoch(parts) -> None:
    stream = PatchStream(parts[:1], shuffle=True, seed=0, rank=0, world=1)
    first = _ids(torch.stack([x for x, _ in stream]))
    stream.set_epoch(1)
    second = _ids(torch.stack([x for x, _ in stream]))
    assert sorted(first) == sorted(second) and first != second


def test_streams_from_files_too(tmp_path) -> None:
    from cropcore.patches.data import NPZ
    from cropcore.settings import data_dir

    stream = PatchStream([data_dir(NPZ) / NPZ, "bigearthnet/BigEarthNet-S2-Example"], rank=1, world=2, agri=True)
    items = list(stream)
    assert len(items) == 65 and items[0][1].shape == (1,)  # (124 + 6) / 2


def test_band_stats_in_one_pass_match_numpy(parts) -> None:
    mean, std = band_stats(parts)
    full = np.concatenate([p.x for p in parts]).astype(np.float64)
    np.testing.assert_allclose(mean, full.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(std, full.std(axis=(0, 2, 3)), rtol=1e-6)
