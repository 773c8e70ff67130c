"""Shared fixtures: the real embedded STAC API on loopback, started once per test session; the container tests
run last, their image build started at collection."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import containers
import pytest

from cropcore import settings

# Tests use their own state folder and ports, so a running demo is never touched (CROPCORE_TEST_HOME and the
# port variables let two test runs on one machine stay apart).
TEST_HOME = Path(os.environ.get("CROPCORE_TEST_HOME", settings.PROJECT_ROOT / ".cropcore" / "test"))
os.environ["CROPCORE_HOME"] = str(TEST_HOME)
os.environ.setdefault("CROPCORE_STAC_PORT", "18082")
os.environ.setdefault("CROPCORE_PG_PORT", "18432")


@pytest.fixture(scope="session")
def stac_api() -> Iterator[str]:
    """URL of the embedded STAC API built from the real sample data (stopped at the end if started here)."""
    from cropcore.stac import server as stac_server

    started_here = not stac_server.running()
    url = stac_server.serve()
    yield url
    if started_here:
        stac_server.stop()


@pytest.fixture(scope="session")
def demo_bbox() -> tuple[float, float, float, float]:
    """A bbox inside the WorldCereal demo patch (Belgium)."""
    return (5.322, 50.630, 5.330, 50.636)


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The container tests last, and their image build started now, beside the rest of the suite."""
    late = [item for item in items if item.get_closest_marker("container")]
    if not late:
        return
    items[:] = [item for item in items if not item.get_closest_marker("container")] + late
    if len(late) < len(items) and not config.option.collectonly:
        TEST_HOME.mkdir(parents=True, exist_ok=True)
        containers.start_early(TEST_HOME / "container-build.log")


def pytest_sessionfinish() -> None:
    containers.stop_early()
