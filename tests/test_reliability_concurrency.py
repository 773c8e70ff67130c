"""Reliability, concurrency: runs at the same time get correct, separate results, and the embedded STAC API
keeps answering while a run is under way. See docs/RELIABILITY.md."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import numpy as np
from test_ui_pages import CROP_MAP, messages, page, run_button

from cropcore.aoi import AOI
from cropcore.pipeline import RunParams, run
from cropcore.stac.catalog import search_items
from cropcore.ui import runs

WEST = (5.3189, 50.6286, 5.3260, 50.6378)
EAST = (5.3262, 50.6286, 5.3334, 50.6340)
SEASON = ("2020-11-01", "2021-10-31")


def feature(bbox: tuple[float, float, float, float]) -> dict:
    w, s, e, n = bbox
    return {"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}


def test_two_pipeline_runs_at_once_match_runs_one_by_one(stac_api):
    params = [RunParams(aoi=bbox, start=SEASON[0], end=SEASON[1], catalog=stac_api) for bbox in (WEST, EAST)]
    alone = [run(p) for p in params]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(run, params))
    for a, b in zip(alone, together, strict=True):
        assert a.prediction["class"].shape == b.prediction["class"].shape
        np.testing.assert_array_equal(a.prediction["class"].values, b.prediction["class"].values)
        np.testing.assert_allclose(a.prediction["confidence"].values, b.prediction["confidence"].values)
    assert together[0].prediction["class"].shape != together[1].prediction["class"].shape


def test_two_dashboard_sessions_run_at_once(stac_api, monkeypatch):
    """Two AppTest sessions (threads of one process, like two browser tabs on one server) press Run together."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import app_test

    # AppTest.run resets the class-wide PagesManager.uses_pages_directory to None before each run (a real server
    # sets it once); a reset in one thread while the other starts its script makes that script run without the
    # pages directory ("Could not find page"). The reset goes to a subclass here, the flag stays set.
    monkeypatch.setattr(app_test, "PagesManager", type("PagesManager", (PagesManager,), {}))
    runs._store().clear()
    sessions = {}
    for name, bbox in (("west", WEST), ("east", EAST)):
        searched = {"aoi": feature(bbox), "datetime": (date(2020, 11, 1), date(2021, 10, 31)), "max_cloud": 80.0,
                    "catalog": "local"}
        sessions[name] = page(CROP_MAP, monkeypatch, **{"cropcore.aoi": searched["aoi"],
                                                        "cropcore.aoi_source": "drawn",
                                                        "cropcore.search_params": searched})
    barrier = threading.Barrier(2)

    def press(at):
        barrier.wait(timeout=60)
        return run_button(at).click().run()

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(sessions, pool.map(press, sessions.values()), strict=True))
    results = {}
    for name, at in done.items():
        assert not at.exception and not at.error, messages(at.error)
        results[name] = at.session_state["cropcore.run"]
    assert results["west"].params.aoi == AOI.parse(feature(WEST))
    assert results["east"].params.aoi == AOI.parse(feature(EAST))
    assert len(runs._store()) == 2
    for name, bbox in (("west", WEST), ("east", EAST)):
        alone = run(RunParams(aoi=feature(bbox), start=date(2020, 11, 1), end=date(2021, 10, 31),
                              catalog=stac_api))
        np.testing.assert_array_equal(results[name].prediction["class"].values, alone.prediction["class"].values)


def test_stac_api_keeps_answering_during_a_run(stac_api):
    finished = threading.Event()
    outcome: list[object] = []

    def background() -> None:
        try:
            outcome.append(run(RunParams(aoi=WEST, start=SEASON[0], end=SEASON[1], catalog=stac_api)))
        except Exception as exc:  # reported by the assertion below
            outcome.append(exc)
        finally:
            finished.set()

    worker = threading.Thread(target=background)
    worker.start()
    latencies = []
    deadline = time.monotonic() + 60
    while not finished.is_set() and time.monotonic() < deadline and len(latencies) < 200:
        t0 = time.perf_counter()
        found = search_items(EAST, SEASON, catalog=stac_api)
        latencies.append(time.perf_counter() - t0)
        assert len(found.items) == 12
    worker.join(timeout=60)
    assert finished.is_set() and not isinstance(outcome[0], Exception), outcome
    assert latencies and max(latencies) < 5.0, latencies  # a run takes seconds, a search a fraction of one


def test_progress_of_two_computations_at_once_stays_with_each():
    """Two threads computing with progress at once: each callback sees only its own tasks, and none is
    left behind to be called by a later computation (dask's global callback registry would do both)."""
    import dask.array as da

    from cropcore.cube.dask_setup import compute

    def slow(block):
        time.sleep(0.005)
        return block

    seen: dict[int, list[str]] = {20: [], 60: []}
    barrier = threading.Barrier(2)

    def work(n: int) -> None:
        barrier.wait(timeout=30)
        compute(da.ones(n, chunks=1).map_blocks(slow).sum(), progress=lambda f, m: seen[n].append(m))

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(work, seen))
    totals = {n: {m.split("/")[1] for m in reported} for n, reported in seen.items()}  # "k/N tasks"
    assert all(len(t) == 1 for t in totals.values()) and totals[20] != totals[60], seen
    assert all(reported[-1].startswith(reported[-1].split("/")[1].split()[0] + "/") for reported in seen.values())
    before = {n: len(m) for n, m in seen.items()}
    compute(da.ones(10, chunks=1).sum())
    assert {n: len(m) for n, m in seen.items()} == before
