"""The agricultural tiles on the Crop map page in a real browser, every request off the machine blocked: the
toggle adds the tile layer (tooltip with the probability and top labels on hover) and the table. Screenshot in
tests/artifacts/."""

from __future__ import annotations

import re

import pytest
from browser import ARTIFACTS, MAP, open_offline, run_crop_map, settled_map

pytestmark = pytest.mark.e2e


def test_tile_layer_tooltip_and_table(dashboard, browser_page):
    page, _ = browser_page
    blocked = open_offline(page, dashboard)
    run_crop_map(page)
    settled_map(page)

    page.get_by_text("Agricultural tiles (1.2 km)").click()
    page.get_by_text("Agricultural tiles", exact=True).wait_for(timeout=90_000)  # the table's heading
    page.get_by_text(re.compile("only 124 BigEarthNet patches")).wait_for()
    frame = settled_map(page)
    frame.locator(".leaflet-control-layers").get_by_text("Agricultural tiles (probability)").wait_for(
        state="attached", timeout=30_000)
    box = page.locator(MAP).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tooltip = frame.locator(".leaflet-tooltip")
    tooltip.wait_for(timeout=10_000)
    text = tooltip.inner_text()
    assert "agricultural (probability)" in text and "top BigEarthNet labels" in text
    page.screenshot(path=str(ARTIFACTS / "tiles_e2e.png"), full_page=True)
    assert not blocked, blocked
