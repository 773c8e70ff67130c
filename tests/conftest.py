"""Shared fixtures: the real embedded STAC API on loopback, started once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from cropcore import settings

# Tests use their own state folder and ports, so a running demo is never touched.
TEST_HOME = settings.PROJECT_ROOT / ".cropcore" / "test"
os.environ["CROPCORE_HOME"] = str(TEST_HOME)
os.environ.setdefault("CROPCORE_STAC_PORT", "18082")
os.environ.setdefault("CROPCORE_PG_PORT", "18432")


@pytest.fixture(scope="session")
def stac_api() -> Iterator[str]:
    """URL of the embedded STAC API built from the real sample data (stopped at the end if started here)."""
    from cropcore import stac_local

    started_here = not stac_local.running()
    url = stac_local.serve()
    yield url
    if started_here:
        stac_local.stop()


@pytest.fixture(scope="session")
def demo_bbox() -> tuple[float, float, float, float]:
    """A bbox inside the WorldCereal demo patch (Belgium)."""
    return (5.322, 50.630, 5.330, 50.636)
