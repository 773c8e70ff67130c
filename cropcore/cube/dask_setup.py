"""Where dask computes, and how the UI and CLI follow its progress.

``CROPCORE_DASK_SCHEDULER`` (:func:`cropcore.settings.dask_scheduler`) chooses the scheduler:

* unset or ``threads``: dask's threaded scheduler with one thread per core (the default: odc-stac reads
  and numpy both release the GIL, and nothing is copied between processes);
* ``sync``: one thread, for debugging;
* ``local-cluster``: a ``distributed.LocalCluster`` sized to the machine (one worker per 2 cores);
* ``tcp://host:8786`` (or ``tls://``): connect to a running distributed scheduler, e.g. one started by
  dask-jobqueue on a cluster or dask-kubernetes.

:func:`compute` runs any dask collection on that scheduler and reports ``progress(fraction, message)``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import dask
from dask.callbacks import Callback

from cropcore import settings
from cropcore.errors import ConfigError
from cropcore.progress import Progress

ENV = "CROPCORE_DASK_SCHEDULER"
LOCAL_SCHEDULERS = ("threads", "sync", "local-cluster")


def scheduler_name() -> str:
    """The configured scheduler: ``threads`` (default), ``sync``, ``local-cluster`` or an address."""
    name = settings.dask_scheduler()
    if name in LOCAL_SCHEDULERS or name.startswith(("tcp://", "tls://", "inproc://")):
        return name
    raise ConfigError(f"{ENV}={name!r} is not a scheduler: use threads, sync, local-cluster or an address "
                      "such as tcp://scheduler:8786")


_clients: dict[str, Any] = {}


def _client(address: str) -> Any:
    if address not in _clients:
        _clients[address] = _open_client(address)
    return _clients[address]


def _open_client(address: str) -> Any:
    from distributed import Client, LocalCluster

    if address == "local-cluster":
        cores = os.cpu_count() or 1
        cluster = LocalCluster(n_workers=max(1, cores // 2), threads_per_worker=min(2, cores),
                               processes=True, dashboard_address=None)
        return Client(cluster)
    try:
        return Client(address, timeout="10s")
    except OSError as exc:
        raise ConfigError(f"cannot reach the dask scheduler at {address} ({exc}): start it or unset {ENV}") from exc


def get_client() -> Any | None:
    """The distributed client of the configured scheduler, or None for the local threads/sync schedulers."""
    name = scheduler_name()
    return None if name in ("threads", "sync") else _client(name)


class ProgressCallback(Callback):
    """Dask local-scheduler callback calling ``progress(fraction, message)`` at most every ``interval`` s."""

    def __init__(self, progress: Progress, *, interval: float = 0.2) -> None:
        super().__init__()
        self._progress = progress
        self._interval = interval
        self._lock = threading.Lock()
        self._total = self._done = 0
        self._last = 0.0

    def _start_state(self, dsk: Any, state: dict[str, Any]) -> None:
        self._total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self._done = len(state["finished"])
        self._progress(0.0, f"0/{self._total} tasks")

    def _posttask(self, key: Any, result: Any, dsk: Any, state: dict[str, Any], worker_id: Any) -> None:
        with self._lock:
            self._done += 1
            now = time.monotonic()
            if now - self._last < self._interval:
                return
            self._last = now
        self._progress(self._done / max(self._total, 1), f"{self._done}/{self._total} tasks")

    def _finish(self, dsk: Any, state: dict[str, Any], errored: bool) -> None:
        if not errored:
            self._progress(1.0, f"{self._total}/{self._total} tasks")


def compute(*collections: Any, progress: Progress | None = None) -> tuple[Any, ...]:
    """``dask.compute`` on the configured scheduler, reporting progress when ``progress`` is given."""
    name = scheduler_name()
    if name in ("threads", "sync"):
        kwargs: dict[str, Any] = {"scheduler": name}
        if name == "threads":
            kwargs["num_workers"] = os.cpu_count() or 1
        if progress is not None:
            # passed to this computation only: dask's global callback registry (``with Callback():``) is
            # shared by every thread, so two runs at once would report each other's tasks, or leave a dead
            # session's callback registered
            kwargs["callbacks"] = [ProgressCallback(progress)._callback]
        return dask.compute(*collections, **kwargs)
    client = _client(name)
    from distributed import as_completed, futures_of

    persisted = client.persist(list(collections))
    futures = futures_of(persisted)
    if progress is not None:
        total = len(futures)
        progress(0.0, f"0/{total} chunks")
        for done, _ in enumerate(as_completed(futures), 1):
            progress(done / total, f"{done}/{total} chunks")
    return tuple(client.compute(persisted, sync=True))


def close() -> None:
    """Close the distributed client (and a local cluster) opened by :func:`compute`, if any."""
    for client in _clients.values():
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
    _clients.clear()
