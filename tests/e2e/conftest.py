"""Fixtures of the browser tests (see browser.py)."""

from __future__ import annotations

import pytest
from browser import _browser_page, _dashboard

dashboard = pytest.fixture(scope="module")(_dashboard)
browser_page = pytest.fixture(_browser_page)
