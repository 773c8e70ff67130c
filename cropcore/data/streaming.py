"""Streaming dataset for data larger than memory: shards split across DataLoader workers and DDP ranks.

A *shard* is anything ``read_shard`` can turn into an iterator of samples (a file path, a row-group id, a
URL). Every (rank, worker) pair is one of ``world_size * num_workers`` readers. With at least as many
shards as readers, each reader opens only its own shards (shard ``i`` goes to reader ``i % readers``);
otherwise every reader scans all shards and keeps every ``readers``-th record. Either way each record is
read by exactly one reader per epoch: none is lost or duplicated. Shard order is shuffled per epoch
(seed + epoch, identical on all readers), an optional buffer shuffles records, and a background thread
reads up to ``prefetch`` samples ahead. Ranks may receive different numbers of samples; with DDP use
``Trainer(use_distributed_sampler=False)`` and equal-sized shards, or cap steps with ``limit_train_batches``.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from cropcore.errors import ConfigError

_DONE = object()


def reader_index(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """This process-and-worker's reader index and the number of readers (ranks x DataLoader workers)."""
    if rank is None or world_size is None:
        initialised = dist.is_available() and dist.is_initialized()
        rank = dist.get_rank() if initialised else 0
        world_size = dist.get_world_size() if initialised else 1
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + worker, world_size * workers


def prefetch(items: Iterable[Any], size: int) -> Iterator[Any]:
    """Iterate over ``items`` while a background thread reads up to ``size`` items ahead."""
    if size <= 0:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, re-raised there
            buffer.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(0.01)


class ShardedStream(IterableDataset):
    """Stream the samples of ``shards`` (read lazily by ``read_shard``), each exactly once per epoch.

    ``rank``/``world_size`` default to the initialised process group (or a single process); pass them to
    shard by hand. Call :meth:`set_epoch` before each epoch for a new shard and record order.
    """

    def __init__(
        self,
        shards: Sequence[Any],
        read_shard: Callable[[Any], Iterable[Any]],
        *,
        shuffle_shards: bool = True,
        shuffle_buffer: int = 0,
        prefetch: int = 64,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if not shards:
            raise ConfigError("ShardedStream needs at least one shard")
        if (rank is None) != (world_size is None) or (world_size is not None and not 0 <= rank < world_size):
            raise ConfigError(f"give both rank and world_size with 0 <= rank < world_size, got {rank}/{world_size}")
        self.shards = list(shards)
        self.read_shard = read_shard
        self.shuffle_shards = shuffle_shards
        self.shuffle_buffer = shuffle_buffer
        self.prefetch = prefetch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Shuffle shards and records differently in ``epoch``."""
        self.epoch = epoch

    def _records(self, reader: int, readers: int) -> Iterator[Any]:
        order = list(self.shards)
        if self.shuffle_shards:
            random.Random(self.seed + self.epoch).shuffle(order)
        if len(order) >= readers:
            for shard in order[reader::readers]:
                yield from self.read_shard(shard)
        else:
            count = 0
            for shard in order:
                for record in self.read_shard(shard):
                    if count % readers == reader:
                        yield record
                    count += 1

    def _shuffled(self, records: Iterator[Any], reader: int) -> Iterator[Any]:
        rng = random.Random(f"{self.seed}-{self.epoch}-{reader}")
        buffer: list[Any] = []
        for record in records:
            buffer.append(record)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[Any]:
        reader, readers = reader_index(self.rank, self.world_size)
        records = self._records(reader, readers)
        if self.shuffle_buffer > 1:
            records = self._shuffled(records, reader)
        return prefetch(records, self.prefetch)
