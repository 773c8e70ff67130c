"""Shared pieces of the browser tests: the dashboard server, a Chromium page, drawing and page navigation."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from cropcore import settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = settings.PROJECT_ROOT / "tests" / "artifacts"
LOCAL = ("http://127.0.0.1", "data:", "blob:", "about:")
MAP = 'iframe[title="streamlit_folium.st_folium"]'
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dashboard(stac_api) -> Iterator[str]:
    """``streamlit run app.py`` on a free port (stopped afterwards)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.headless", "true", "--server.address", "127.0.0.1"]
    proc = subprocess.Popen(cmd, cwd=settings.PROJECT_ROOT, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/_stcore/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            pytest.fail("streamlit did not start within 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _browser_page(dashboard):
    """A Chromium page and the list of every URL it requests."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        seen: list[str] = []
        page.on("request", lambda r: seen.append(r.url))
        yield page, seen
        browser.close()


def block_network(page) -> list[str]:
    """Abort every later request of ``page`` to anything but the local server; returns those attempted.

    Call it once the app is up: routing from the very first request stalls Streamlit's start-up in Chromium
    (its shell never connects). The requests before are in ``browser_page``'s list, which tests check too.
    """
    blocked: list[str] = []

    def route(r) -> None:
        if r.request.url.startswith(LOCAL):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return blocked


def open_offline(page, dashboard: str) -> list[str]:
    """The dashboard's home page loaded, then the network to anything but 127.0.0.1 blocked; the blocked URLs."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(dashboard, wait_until="networkidle")
    page.get_by_role("heading", name="cropcore").first.wait_for(timeout=60_000)
    return block_network(page)


def zoom_200(page) -> None:
    """Lay ``page`` out as Chromium does at 200 % zoom: half the CSS pixels, two device pixels each."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"] // 2, "height": size["height"] // 2})
    page.context.new_cdp_session(page).send("Emulation.setDeviceMetricsOverride", {
        "width": size["width"] // 2, "height": size["height"] // 2, "deviceScaleFactor": 2, "mobile": False})


def zoom_100(page) -> None:
    """Undo :func:`zoom_200`."""
    size = page.viewport_size
    page.context.new_cdp_session(page).send("Emulation.clearDeviceMetricsOverride")
    page.set_viewport_size({"width": size["width"] * 2, "height": size["height"] * 2})


def settled_map(page):
    """The map's frame once Streamlit's rerun is over (a re-drawn map comes after the old one, which then goes)."""
    for _ in range(2):
        page.wait_for_function(f"document.querySelectorAll('{MAP}').length === 1", timeout=60_000)
        page.wait_for_timeout(700)
    return page.frame_locator(MAP).last


def open_switcher(frame):
    """The map's folded layer switcher opened (the pointer over it, as a user hovers); its overlays' list."""
    frame.locator(".leaflet-control-layers").hover()
    overlays = frame.locator(".leaflet-control-layers-overlays")
    overlays.wait_for()
    return overlays


def draw_rectangle_and_search(page) -> None:
    """Draw a rectangle around the centre of the Search map (over the demo area) and search."""
    iframe = page.locator(MAP)
    frame = page.frame_locator(MAP)
    rectangle_tool = frame.locator(".leaflet-draw-draw-rectangle")
    rectangle_tool.wait_for(timeout=90_000)  # the first map of a new server imports leafmap (seconds)
    # The map really rendered: Leaflet drew the demo-area outline as an SVG path.
    assert frame.locator("path.leaflet-interactive").count() >= 1

    box = iframe.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    rectangle_tool.click()
    page.mouse.move(cx - 100, cy - 80)
    page.mouse.down()
    page.mouse.move(cx, cy, steps=5)
    page.mouse.move(cx + 100, cy + 80, steps=5)
    page.mouse.up()
    page.get_by_text("Area of interest (drawn)").wait_for(timeout=20_000)

    page.get_by_role("button", name="Search scenes").click()
    heading = page.get_by_role("heading", name=re.compile(r"^\d+ scenes$"))
    heading.wait_for(timeout=30_000)
    assert int(heading.inner_text().split()[0]) >= 10
    page.wait_for_timeout(1500)  # let the footprints draw


def open_page(page, label: str) -> None:
    """Go to another page through the sidebar (a new URL would start a new session)."""
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=label, exact=True).click()
    page.get_by_role("heading", name=label, exact=True).first.wait_for(timeout=20_000)




def run_crop_map(page) -> None:
    """Open the Crop map page, press Run and wait for the run to finish."""
    open_page(page, "Crop map")
    page.get_by_role("button", name="Run the crop map").click()
    page.get_by_text(re.compile(r"^Crop map ready in")).wait_for(timeout=90_000)
