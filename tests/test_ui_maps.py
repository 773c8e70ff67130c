"""Map builders (leafmap's folium backend): layers, legend, swipe view, local assets only; the palettes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from leafmap.foliumap import Map as LeafmapMap

from cropcore.legend import CROP_LEGEND, CVD_PALETTE, DEFAULT_PALETTE, OKABE_ITO, palette_colors
from cropcore.products.plots import pixel_ndvi_figure
from cropcore.ui import map as ui_map
from cropcore.ui.assets import localize
from cropcore.ui.map import LEFT_PANE, OSM_URL, RIGHT_PANE, base_map, image_layer

BOUNDS = [[50.63, 5.32], [50.64, 5.33]]


def rgba(value: int) -> np.ndarray:
    image = np.zeros((4, 4, 4), dtype=np.uint8)
    image[..., 0], image[..., 3] = value, 255
    return image


def rendered(m, tmp_path) -> str:
    localize(m, tmp_path, "/app/static/")
    return m.get_root().render()


def assert_offline(html: str) -> None:
    """Every script and stylesheet is served locally; the only web address left is the opt-in OSM layer."""
    links = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert links and all(link.startswith("/app/static/vendor/") for link in links), links
    assert set(re.findall(r"https?://[^\"' )]+", html)) == {OSM_URL}


def test_the_map_is_leafmap_with_layers_legend_and_local_assets(tmp_path):
    layers = [image_layer(rgba(200), BOUNDS, name="Crop map"),
              image_layer(rgba(50), BOUNDS, name="Confidence", show=False)]
    m = base_map(layers=layers, legend={"maize": "#f2c12e", "uncertain": "#4a4a4a"}, legend_title="Crop map")
    assert isinstance(m, LeafmapMap)
    html = rendered(m, tmp_path)
    assert_offline(html)
    assert html.count("L.imageOverlay(") == 2 and '"Crop map" : image_overlay_' in html
    assert html.index("L.control.layers(") > html.rindex("L.imageOverlay(")
    assert "maplegend" in html and "background:#f2c12e" in html and ">uncertain</li>" in html
    assert "L.Control.Draw" in html and "tile.openstreetmap.org" in html  # draw tool; OSM only as opt-in layer
    assert "sideBySide" not in html


def test_the_search_map_keeps_its_draw_tool_without_a_legend(tmp_path):
    html = rendered(base_map(), tmp_path)
    assert_offline(html)
    assert "L.Control.Draw" in html and "maplegend" not in html


def test_the_swipe_view_clips_two_panes(tmp_path):
    left = image_layer(rgba(10), BOUNDS, name="Sentinel-2 true colour", pane=LEFT_PANE)
    right = image_layer(rgba(250), BOUNDS, name="Crop map", pane=RIGHT_PANE)
    html = rendered(base_map(layers=[left, right], draw=False, swipe=(left, right)), tmp_path)
    assert_offline(html)
    assert "leaflet-side-by-side" in html
    assert re.search(rf"L\.control\.sideBySide\(\s*{left.get_name()}, {right.get_name()}", html)
    # the panes exist before the overlays drawn in them, and an overlay's container is its pane
    assert re.search(rf'createPane\(\s*"{LEFT_PANE}"\)', html).start() < html.index("L.imageOverlay(")
    assert f'"pane": "{LEFT_PANE}"' in html and f'"pane": "{RIGHT_PANE}"' in html
    assert "getContainer: function () { return this.getPane(); }" in html


def test_leafmap_is_imported_with_the_first_map_only():
    source = Path(ui_map.__file__).read_text()
    assert "\nimport leafmap" not in source and "\nfrom leafmap" not in source


def test_default_palette_is_the_legend_and_the_cvd_one_is_okabe_ito():
    colors = {i: c.color for i, c in enumerate(CROP_LEGEND)}
    assert palette_colors(colors, DEFAULT_PALETTE) == colors
    safe = palette_colors(colors, CVD_PALETTE)
    assert list(safe) == list(colors) and list(safe.values()) == list(OKABE_ITO[:len(colors)])
    assert len(set(safe.values())) == len(colors)
    with pytest.raises(ValueError, match="colour-blind safe"):
        palette_colors(colors, "rainbow")


def test_the_pixel_curve_marks_the_month_on_the_map():
    times = pd.date_range("2020-11-01", periods=12, freq="MS")
    fig = pixel_ndvi_figure(times, np.linspace(0.1, 0.8, 12), label="maize", month=times[4])
    (line,) = fig.layout.shapes
    assert pd.Timestamp(line.x0) == times[4] == pd.Timestamp(line.x1)
    assert fig.layout.annotations[0].text == "Mar 2021 on the map"
    assert not pixel_ndvi_figure(times, np.zeros(12), label="maize").layout.shapes
