"""ShardedStream: every record exactly once across 2 DataLoader workers x 2 (fake) ranks; prefetching."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cropcore.data.streaming import ShardedStream, prefetch, reader_index
from cropcore.errors import ConfigError


def read_npy(path: str) -> list[int]:
    """A shard file: one record per row."""
    return [int(v) for v in np.load(path)]


def write_shards(root: Path, sizes: list[int]) -> list[str]:
    paths, start = [], 0
    for i, n in enumerate(sizes):
        path = root / f"shard_{i:03d}.npy"
        np.save(path, np.arange(start, start + n))
        paths.append(str(path))
        start += n
    return paths


@pytest.mark.parametrize("sizes", [[7, 3, 11, 5, 9, 2, 8, 6, 4], [13, 6]], ids=["file-split", "record-split"])
@pytest.mark.parametrize("shuffle_buffer", [0, 5])
def test_two_workers_times_two_ranks_see_every_record_once(tmp_path, sizes, shuffle_buffer):
    shards = write_shards(tmp_path, sizes)
    seen: Counter[int] = Counter()
    for rank in range(2):
        stream = ShardedStream(shards, read_npy, shuffle_buffer=shuffle_buffer, prefetch=4, seed=3,
                               rank=rank, world_size=2)
        stream.set_epoch(1)
        loader = DataLoader(stream, batch_size=None, num_workers=2)
        seen.update(int(v) for v in loader)
    assert seen == Counter(range(sum(sizes)))


def test_epochs_change_the_order_but_not_the_records(tmp_path):
    stream = ShardedStream(write_shards(tmp_path, [4] * 6), read_npy, shuffle_buffer=8, rank=0, world_size=1)
    first = list(stream)
    stream.set_epoch(1)
    second = list(stream)
    assert first != second and sorted(first) == sorted(second) == list(range(24))


def test_batches_collate_through_a_dataloader(tmp_path):
    def read(path: str):
        return ((torch.full((3,), float(v)), v) for v in read_npy(path))

    loader = DataLoader(ShardedStream(write_shards(tmp_path, [5, 5]), read), batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 3) and y.shape == (4,)


def test_prefetch_reads_ahead_and_forwards_errors():
    produced = []

    def items():
        for i in range(10):
            produced.append(i)
            yield i

    it = prefetch(items(), 3)
    assert next(it) == 0
    for _ in range(200):  # the reader thread fills the queue while the consumer waits
        if len(produced) >= 4:
            break
        time.sleep(0.01)
    assert len(produced) >= 4
    assert list(it) == list(range(1, 10))

    def broken():
        yield 1
        raise OSError("shard unreadable")

    with pytest.raises(OSError, match="unreadable"):
        list(prefetch(broken(), 2))


def test_reader_index_and_argument_checks():
    assert reader_index() == (0, 1) and reader_index(1, 4) == (1, 4)
    with pytest.raises(ConfigError):
        ShardedStream([], read_npy)
    with pytest.raises(ConfigError):
        ShardedStream(["a"], read_npy, rank=2, world_size=2)
