"""Streaming patches from large collections: :class:`PatchStream`, an ``IterableDataset`` sharded across
DataLoader workers and DDP ranks, and :func:`band_stats`, per-band mean and std computed once in one pass.

A collection is a sequence of *sources* (npz files or folders of BigEarthNet patch folders) read one at a time,
so memory holds one source, never the collection. Sample ``i`` of the whole stream (in source order) goes to
shard ``i % (ranks x workers)``: every sample is read by exactly one worker of one rank. With ``even=True``
(training under DDP) shards are padded by wrapping around so that every rank sees the same number of samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cropcore.patches.data import PatchSet, read_source


def shard_of(rank: int, world: int) -> tuple[int, int]:
    """(shard index, shard count) of the calling DataLoader worker on DDP rank ``rank`` of ``world``."""
    info = get_worker_info()
    workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
    return rank * workers + worker, world * workers


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class PatchStream(IterableDataset):
    """Yields ``(x (12, H, W) float32, target)``: ``target`` is the multi-hot (19,) or, with ``agri``, (1,).

    ``sources``: npz files / patch-folder roots, or :class:`PatchSet` objects; ``lengths`` (patches per
    source) lets shards be computed without reading a source twice; ``rank``/``world`` default to the
    process group's. ``shuffle`` permutes within each source with ``seed + epoch`` (call :meth:`set_epoch`).
    """

    def __init__(self, sources: Sequence[str | Path | PatchSet], *, agri: bool = False, shuffle: bool = False,
                 seed: int = 0, even: bool = False, rank: int | None = None, world: int | None = None) -> None:
        super().__init__()
        self.sources, self.agri, self.shuffle, self.seed, self.even = list(sources), agri, shuffle, seed, even
        self.rank, self.world = rank, world
        self.epoch = 0
        self.lengths = [len(s) if isinstance(s, PatchSet) else None for s in self.sources]

    def set_epoch(self, epoch: int) -> None:
        """New shuffling order for ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Samples this rank yields (all sources' lengths must be known: give PatchSets or iterate once)."""
        if None in self.lengths:
            raise TypeError("PatchStream's length is known once every source has been read")
        world = _rank_world()[1] if self.world is None else self.world
        return -(-sum(self.lengths) // world)

    def _load(self, index: int) -> PatchSet:
        source = self.sources[index]
        data = source if isinstance(source, PatchSet) else read_source(source)
        self.lengths[index] = len(data)
        return data

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        default_rank, default_world = _rank_world()
        rank = default_rank if self.rank is None else self.rank
        world = default_world if self.world is None else self.world
        shard, shards = shard_of(rank, world)
        total = sum(self.lengths) if None not in self.lengths else None
        per_shard = -(-total // shards) if self.even and total is not None else None
        yielded, start = 0, 0
        for index in range(len(self.sources)):
            data = self._load(index)
            order = np.arange(len(data))
            if self.shuffle:
                np.random.default_rng(self.seed + self.epoch + index).shuffle(order)
            for offset, i in enumerate(order):
                if (start + offset) % shards == shard:
                    yield self._item(data, int(i))
                    yielded += 1
            start += len(data)
        if per_shard is not None:  # wrap around so every shard yields as many samples
            for i in range(per_shard - yielded):
                data = self._load(i % len(self.sources))
                yield self._item(data, (shard + i * shards) % len(data))

    def _item(self, data: PatchSet, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        target = data.agri[i:i + 1] if self.agri else data.y19[i]
        return torch.from_numpy(data.x[i]), torch.from_numpy(np.asarray(target, np.float32))


def stream_loader(stream: PatchStream, *, batch_size: int, num_workers: int = 0, prefetch: int = 2) -> DataLoader:
    """A DataLoader over ``stream``: ``num_workers`` persistent workers, each ``prefetch`` batches ahead."""
    extra = {"persistent_workers": True, "prefetch_factor": prefetch} if num_workers > 0 else {}
    return DataLoader(stream, batch_size=batch_size, num_workers=num_workers, **extra)


def band_stats(sources: Sequence[str | Path | PatchSet]) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation over every pixel of every source, in one pass (float64 sums)."""
    total = total_sq = None
    count = 0
    for source in sources:
        data = source if isinstance(source, PatchSet) else read_source(source)
        x = data.x.astype(np.float64)
        s, sq = x.sum(axis=(0, 2, 3)), (x**2).sum(axis=(0, 2, 3))
        total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.tolist(), std.tolist()
