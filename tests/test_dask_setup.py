"""Scheduler choice and progress reporting."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cropcore.cube import dask_setup
from cropcore.errors import ConfigError


def test_default_is_the_threaded_scheduler(monkeypatch):
    monkeypatch.delenv(dask_setup.ENV, raising=False)
    assert dask_setup.scheduler_name() == "threads"
    assert dask_setup.get_client() is None


def test_unknown_scheduler_says_what_to_use(monkeypatch):
    monkeypatch.setenv(dask_setup.ENV, "gpu-please")
    with pytest.raises(ConfigError, match="tcp://"):
        dask_setup.scheduler_name()


@pytest.mark.parametrize("name", ["threads", "sync"])
def test_local_progress_runs_from_zero_to_one(monkeypatch, name):
    monkeypatch.setenv(dask_setup.ENV, name)
    seen: list[tuple[float, str]] = []
    (total,) = dask_setup.compute((da.ones((64, 64), chunks=8) * 2).sum(),
                                  progress=lambda f, m: seen.append((f, m)))
    assert total == 2 * 64 * 64
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert seen[-1][1].endswith("tasks")


def test_connects_to_a_running_distributed_scheduler(monkeypatch):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                      dashboard_address=None) as cluster:
        monkeypatch.setenv(dask_setup.ENV, cluster.scheduler_address)
        try:
            assert dask_setup.get_client() is not None
            seen: list[float] = []
            (arr,) = dask_setup.compute(da.arange(100, chunks=10) * 3, progress=lambda f, m: seen.append(f))
            np.testing.assert_array_equal(arr, np.arange(100) * 3)
            assert seen[0] == 0.0 and seen[-1] == 1.0 and len(seen) == 11
        finally:
            dask_setup.close()


def test_unreachable_scheduler_is_a_config_error(monkeypatch):
    monkeypatch.setenv(dask_setup.ENV, "tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="unset"):
        dask_setup.get_client()
