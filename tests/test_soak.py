"""Bounded soak test against the local stack: 50 searches and 5 full pipeline runs on the demo patch; every
run finishes, identical inputs give identical maps, and memory returns to within 20 % of its level after a
warm-up run. The figures are printed (``-s``) for docs/RELIABILITY.md."""

from __future__ import annotations

import gc
import hashlib
import time

import numpy as np
import psutil
import pytest

from cropcore.pipeline import RunParams, run
from cropcore.stac.catalog import search_items

DEMO = (5.3189, 50.6286, 5.3334, 50.6378)
SEARCHES, RUNS = 50, 5
TIME_LIMIT_S = 120


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def _digest(result) -> str:
    prediction = result.prediction
    data = np.asarray(prediction["class"].values).tobytes() + np.asarray(prediction["confidence"].values).tobytes()
    return hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_soak_searches_and_runs(stac_api):
    params = RunParams(aoi=DEMO, start="2020-11-01", end="2021-10-31", catalog=stac_api)
    reference = _digest(run(params))  # warm-up: model, GDAL and dask caches, imports
    before = _rss()
    t0 = time.monotonic()
    served = 0
    for i in range(SEARCHES):
        assert time.monotonic() - t0 < TIME_LIMIT_S
        found = search_items(DEMO, ("2020-11-01", "2021-10-31"), max_cloud=[None, 80, 20][i % 3], catalog=stac_api)
        assert len(found.items) == [12, 10, 10][i % 3]
        served += 1
    digests = []
    for _ in range(RUNS):
        assert time.monotonic() - t0 < TIME_LIMIT_S
        result = run(params)
        assert not result.failures and set(result.timings) >= {"search", "load", "preprocess", "infer"}
        digests.append(_digest(result))
        del result
    after = _rss()
    elapsed = time.monotonic() - t0
    print(f"\nsoak: {served} searches, {len(digests)} runs in {elapsed:.1f} s; "
          f"RSS {before / 2**20:.0f} MiB before, {after / 2**20:.0f} MiB after ({(after - before) / before:+.1%})")
    assert digests == [reference] * RUNS
    assert after <= 1.2 * before and after >= 0.8 * before
