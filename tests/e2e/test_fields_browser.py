"""The Fields page in a real browser, offline: draw and search, map the crops, upload a parcel file, see one row
per field and a clicked field's NDVI curve, download the parcels and the field polygons as GeoPackage and read
them back. Screenshots go to tests/artifacts/fields_*.png.

The parcel file is made here: a 4 x 4 grid of rectangles over the demo AOI's bbox (5.3189, 50.6286, 5.3334,
50.6378) and one rectangle far outside it (no parcel source covers the demo patch: the WorldCereal reference
data are points)."""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from browser import ARTIFACTS, LOCAL, MAP, draw_rectangle_and_search, open_page, run_crop_map, settled_map

pytestmark = pytest.mark.e2e

DEMO = (5.3189, 50.6286, 5.3334, 50.6378)
PARCEL_COLUMNS = {"parcel", "status", "note", "class_id", "class", "majority_share", "confidence", "uncertain_share",
                  "area_ha", "pixels", "overlaps", "ndvi_2020_11", "ndvi_2021_10", "field", "geometry"}
POLYGON_COLUMNS = ["class_id", "class", "area_ha", "pixels", "confidence", "geometry"]


def parcel_file(folder: Path) -> Path:
    w, s, e, n = DEMO
    xs, ys = np.linspace(w, e, 5), np.linspace(s, n, 5)
    geoms = [shapely.box(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(4) for i in range(4)]
    geoms.append(shapely.box(6.0, 51.0, 6.01, 51.01))
    path = folder / "demo_fields.gpkg"
    gpd.GeoDataFrame({"field": [f"F{i}" for i in range(17)]}, geometry=geoms, crs=4326).to_file(path)
    return path


def download(page, name: str, folder: Path) -> Path:
    with page.expect_download() as done:
        page.get_by_role("button", name=re.compile(rf"^{re.escape(name)}")).click()
    path = folder / done.value.suggested_filename
    done.value.save_as(path)
    return path


def test_upload_parcels_click_one_and_download(dashboard, browser_page, tmp_path: Path):
    page, seen = browser_page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{dashboard}/Search", wait_until="networkidle")
    draw_rectangle_and_search(page)
    run_crop_map(page)

    open_page(page, "Fields")
    page.get_by_text("Upload a parcel file").wait_for(timeout=30_000)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(parcel_file(tmp_path)))
    summary = page.get_by_text(re.compile(r"^17 parcels: \d+ mapped"))
    summary.wait_for(timeout=60_000)
    assert "outside the map (no statistics)" in summary.inner_text()
    page.locator('[data-testid="stDataFrame"]').wait_for()
    frame = settled_map(page)  # the map re-drawn with the parcels
    switcher = frame.locator(".leaflet-control-layers-overlays")
    switcher.get_by_text("Parcels (majority class)").wait_for(state="attached", timeout=60_000)
    assert frame.locator("path.leaflet-interactive").count() >= 16  # the parcels (and the demo and AOI outlines)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "fields_parcels.png"), full_page=True)
    iframe = page.locator(MAP)
    iframe.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "fields_map.png"), full_page=True)

    # A click at the map's centre (it is fitted on the mapped area) lands in a parcel: its NDVI curve.
    box = iframe.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.get_by_text(re.compile(r"^Parcel \d+ \(ok")).wait_for(timeout=30_000)
    page.locator(".js-plotly-plot").wait_for(timeout=30_000)
    assert page.locator(".js-plotly-plot").count() == 1
    assert page.locator(".js-plotly-plot").get_by_text(re.compile("^NDVI median of parcel")).count() == 1
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "fields_curve.png"), full_page=True)

    parcels = gpd.read_file(download(page, "Parcels (GeoPackage)", tmp_path))
    assert len(parcels) == 17 and PARCEL_COLUMNS <= set(parcels.columns)
    assert parcels.loc[parcels["field"] == "F16", "status"].item() == "outside"
    assert parcels.loc[parcels["status"] == "ok", "class"].notna().all()
    polygons = gpd.read_file(download(page, "Field polygons (GeoPackage)", tmp_path))
    assert list(polygons.columns) == POLYGON_COLUMNS and len(polygons) >= 1
    assert polygons["pixels"].min() >= 10  # the default minimum mapping unit, 0.1 ha

    button = page.get_by_role("button", name=re.compile(r"^Field polygons \(GeoPackage\)"))
    before = button.inner_text()
    mmu = page.get_by_label("Minimum mapping unit (ha)", exact=True)
    mmu.fill("0.5")
    mmu.press("Enter")
    page.get_by_text(re.compile(r"minimum mapping unit 0\.5 ha = 50 pixels")).wait_for(timeout=30_000)
    for _ in range(60):  # the buttons are redrawn with the new files (their sizes change) after the caption
        if button.inner_text() != before:
            break
        page.wait_for_timeout(500)
    coarse = gpd.read_file(download(page, "Field polygons (GeoPackage)", tmp_path))
    assert coarse["pixels"].min() >= 50 and len(coarse) <= len(polygons)
    page.get_by_text(re.compile(r"^Parcel \d+ \(ok")).wait_for()  # the redrawn map keeps the clicked parcel
    page.get_by_role("heading", name="Downloads").scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "fields_downloads.png"), full_page=True)
    assert [u for u in seen if not u.startswith(LOCAL)] == []
