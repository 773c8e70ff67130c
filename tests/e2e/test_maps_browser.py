"""The leafmap maps in a real browser with every request off the machine blocked: draw and search, the crop map,
the swipe view dragged and moved with the keyboard, the month slider, the colour-blind-safe palette reached with
Tab, and the legend at 200 % zoom. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from browser import (
    ARTIFACTS,
    LOCAL,
    MAP,
    draw_rectangle_and_search,
    open_offline,
    open_page,
    run_crop_map,
    settled_map,
    zoom_100,
    zoom_200,
)

pytestmark = pytest.mark.e2e

OKABE_GREEN = "rgb(0, 158, 115)"  # Okabe-Ito bluish green, the first class in the colour-blind-safe palette


def clips(frame) -> tuple[str, str]:
    """The CSS clip of the swipe view's left and right panes."""
    return tuple(frame.locator(f".leaflet-swipe-{side}-pane").evaluate("e => e.style.clip")
                 for side in ("left", "right"))


def focused(page) -> str:
    """What has the keyboard focus: its role or tag, and its label."""
    return page.evaluate("""() => { const e = document.activeElement;
        const label = e.getAttribute('aria-label') || e.closest('label')?.innerText || '';
        return (e.getAttribute('role') || e.tagName.toLowerCase()) + ': ' + label.trim(); }""")


def tab_to(page, pattern: str, presses: int = 15) -> str:
    """Press Tab until the focused element matches ``pattern``; returns its description."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if re.search(pattern, focused(page)):
            return focused(page)
    raise AssertionError(f"Tab never reached {pattern!r} (last: {focused(page)})")


def check_legend_fits(page, frame) -> None:
    """Legend rows (beside the map and on it) are inside their box, not cut and not on top of each other."""
    for rows, box in ((page.locator(".cropcore-legend > div"), page.locator(".cropcore-legend")),
                      (frame.locator(".maplegend li"), frame.locator(".maplegend"))):
        outer = box.bounding_box()
        boxes = [rows.nth(i).bounding_box() for i in range(rows.count())]
        assert len(boxes) >= 6
        for a, b in pairwise(boxes):
            assert a["y"] + a["height"] <= b["y"] + 1  # one below the other
        for b in boxes:
            assert outer["x"] - 1 <= b["x"] and b["x"] + b["width"] <= outer["x"] + outer["width"] + 1
            assert outer["y"] - 1 <= b["y"] and b["y"] + b["height"] <= outer["y"] + outer["height"] + 1
        clipped = rows.evaluate_all("rs => rs.filter(r => r.scrollWidth > r.clientWidth + 1).length")
        assert clipped == 0


def test_maps_offline_swipe_month_slider_keyboard_and_zoom(dashboard, browser_page):
    page, seen = browser_page
    blocked = open_offline(page, dashboard)
    assert page.evaluate("fetch('https://example.com/').then(() => 'reached', () => 'blocked')") == "blocked"
    assert blocked == ["https://example.com/"]
    blocked.clear()
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Search", exact=True).click()
    draw_rectangle_and_search(page)

    run_crop_map(page)
    frame = settled_map(page)
    frame.locator("img.leaflet-image-layer").nth(1).wait_for(timeout=30_000)
    frame.locator(".maplegend").get_by_text("winter cereals").wait_for()  # leafmap's legend on the map

    # Swipe: true colour left, crop map right; drag the divider, then move it with the keyboard.
    page.get_by_text("Swipe: true colour | crop map").click()
    page.wait_for_timeout(1000)
    frame = settled_map(page)
    divider = frame.locator(".leaflet-sbs-divider")
    divider.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    before = clips(frame)
    assert all(c.startswith("rect(") for c in before)
    page.screenshot(path=str(ARTIFACTS / "maps_swipe_e2e.png"), full_page=True)
    box = divider.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 180, y, steps=8)
    page.mouse.up()
    dragged = clips(frame)
    assert dragged != before
    assert divider.bounding_box()["x"] < box["x"] - 100
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "maps_swipe_dragged_e2e.png"), full_page=True)
    frame.locator("input.leaflet-sbs-range").focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    assert clips(frame) != dragged

    # Keyboard: Tab goes from the opacity slider to the palette toggle; arrows move the slider, Space toggles.
    opacity = page.get_by_role("slider").first
    opacity.focus()
    value = opacity.get_attribute("aria-valuenow")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"() => document.activeElement.getAttribute('aria-valuenow') !== '{value}'",
                           timeout=10_000)
    assert "Colour-blind safe" in tab_to(page, "Colour-blind safe")
    page.keyboard.press("Space")
    swatch = page.locator(".cropcore-legend span[style*='background']").first
    page.wait_for_function(
        f"() => getComputedStyle(document.querySelector('.cropcore-legend span[style*=background]'))"
        f".backgroundColor === '{OKABE_GREEN}'", timeout=30_000)
    assert swatch.evaluate("e => getComputedStyle(e).backgroundColor") == OKABE_GREEN
    page.wait_for_timeout(1500)
    frame = settled_map(page)
    page.screenshot(path=str(ARTIFACTS / "maps_palette_e2e.png"), full_page=True)
    # Leaflet's own controls take the focus too (links and the layer switcher's checkboxes).
    zoom_in = frame.locator(".leaflet-control-zoom-in")
    zoom_in.focus()
    assert zoom_in.evaluate("e => e === document.activeElement")

    # 200 % zoom: the legends beside and on the map still read.
    page.get_by_text("Layers", exact=True).click()
    page.wait_for_timeout(1000)
    frame = settled_map(page)
    frame.locator("img.leaflet-image-layer").nth(1).wait_for(timeout=30_000)
    zoom_200(page)
    page.wait_for_timeout(2000)
    check_legend_fits(page, frame)
    page.locator(".cropcore-legend").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "legend_zoom200_e2e.png"))
    page.locator(MAP).evaluate("e => e.scrollIntoView({block: 'end'})")  # the legend sits at its bottom
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "map_legend_zoom200_e2e.png"))
    zoom_100(page)

    # The season month by month: the slider changes the month and the image; a click gives the curve.
    open_page(page, "Analysis")
    frame = settled_map(page)
    image = frame.locator("img.leaflet-image-layer").first
    image.wait_for(timeout=30_000)
    first = image.get_attribute("src")
    month = page.get_by_role("slider").first
    month.scroll_into_view_if_needed()
    start = month.get_attribute("aria-valuetext")
    month.focus()
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => document.activeElement.getAttribute('aria-valuetext') !== '{start}'",
                           timeout=10_000)
    page.wait_for_function(
        """([sel, src]) => { const f = document.querySelector(sel);
            const img = f && f.contentDocument && f.contentDocument.querySelector('img.leaflet-image-layer');
            return img && img.getAttribute('src') !== src; }""", arg=[MAP, first], timeout=30_000)
    shown = month.get_attribute("aria-valuetext")
    assert shown != start
    page.wait_for_timeout(1500)
    settled_map(page).locator(".leaflet-container").click()  # its centre: the map is fitted on the area
    page.get_by_text(re.compile(r"^Pixel at")).wait_for(timeout=30_000)
    page.locator(".js-plotly-plot").get_by_text(f"{shown} on the map").wait_for(timeout=30_000)
    page.get_by_test_id("stRadioGroup").get_by_text("NDVI", exact=True).click()
    settled_map(page).locator(".maplegend").get_by_text("very dense", exact=False).wait_for(timeout=30_000)
    page.get_by_text(re.compile(r"^Pixel at")).wait_for(timeout=30_000)  # the pixel stays with a new image
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "maps_month_slider_e2e.png"), full_page=True)

    assert blocked == []  # nothing tried to leave the machine
    assert [u for u in seen if not u.startswith(LOCAL) and u != "https://example.com/"] == []
