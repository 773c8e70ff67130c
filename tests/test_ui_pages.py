"""Crop map, Analysis, Export and Model pages headless (streamlit AppTest): the real pipeline against the
real embedded STAC API, with ``st_folium`` patched for clicks."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from streamlit.testing.v1 import AppTest

from cropcore import pipeline, settings
from cropcore.aoi import AOI
from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.products.product import map_colors
from cropcore.ui import map as ui_map
from cropcore.ui import modelcard, runs

APP = settings.PROJECT_ROOT / "app.py"
CROP_MAP, ANALYSIS, EXPORT, MODEL = ("pages/2_Crop_map.py", "pages/4_Analysis.py", "pages/5_Export.py",
                                     "pages/6_Model.py")
CLICK = {"lat": 50.6332, "lng": 5.3262}  # inside the demo patch


class FakeMap:
    """Stands in for ``st_folium``: records the maps it was given and returns a click (or nothing)."""

    def __init__(self, click: dict[str, float] | None = None) -> None:
        self.click = click
        self.maps: list[Any] = []

    def __call__(self, fig: Any, **kwargs: Any) -> dict[str, Any]:
        self.maps.append(fig)
        return {"last_clicked": self.click}


def messages(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def page(path: str, monkeypatch: pytest.MonkeyPatch, fake: FakeMap | None = None, **session: Any) -> AppTest:
    monkeypatch.setattr(ui_map, "st_folium", fake or FakeMap())
    at = AppTest.from_file(str(APP), default_timeout=120)
    for key, value in session.items():
        at.session_state[key] = value
    return at.switch_page(path).run()


def run_button(at: AppTest):
    return next(b for b in at.button if b.label == "Run the crop map")


@pytest.fixture(scope="module")
def demo_run(stac_api) -> pipeline.RunResult:
    """The demo area mapped by the Crop map page (the result it keeps in the session)."""
    with pytest.MonkeyPatch.context() as mp:
        at = page(CROP_MAP, mp)
        at = run_button(at).click().run()
        assert not at.exception and not at.error, messages(at.error)
        return at.session_state["cropcore.run"]


def test_crop_map_of_the_demo_area_by_default(stac_api, monkeypatch):
    runs._store.clear()
    calls = []
    real_run = pipeline.run
    monkeypatch.setattr(pipeline, "run", lambda *a, **kw: calls.append(a) or real_run(*a, **kw))
    fake = FakeMap()
    at = page(CROP_MAP, monkeypatch, fake)
    assert not at.exception
    assert "demo area" in messages(at.caption)
    assert at.selectbox(key="widget.model").value == pipeline.DEFAULT_MODEL
    assert "tempcnn_dl4sits" not in at.selectbox(key="widget.model").options  # needs dated input
    at = run_button(at).click().run()
    assert not at.exception and not at.error, messages(at.error)
    assert len(calls) == 1
    result = at.session_state["cropcore.run"]
    assert result.params.catalog == "local" and len(result.search.items) >= 10
    assert (np.asarray(result.prediction["class"]) != 255).mean() > 0.5
    # Status line per stage, then a summary of the timings.
    status = at.get("status")[0]
    assert status.label.startswith("Crop map ready in")
    assert "searching scenes" in messages(status.markdown) and "classifying" in messages(status.markdown)
    # Legend: every class with its colour, "uncertain" in its own; the four overlays with a layer switcher.
    legend = messages(at.get("html"))
    for entry in result.meta.legend:
        assert entry.name in legend and entry.color in legend
    assert "<i>uncertain</i>" in legend and map_colors(result.meta)[UNCERTAIN] in legend
    threshold = result.meta.calibration.min_confidence  # the calibrated default's threshold
    assert f"Uncertain*: confidence below {threshold:.2f}" in messages(at.caption)
    assert at.slider(key="widget.min_confidence.tempcnn_worldcereal").value == pytest.approx(threshold)
    html = fake.maps[-1].get_root().render()
    assert html.count("L.imageOverlay(") == 4
    assert html.index("L.control.layers(") > html.rindex("L.imageOverlay(")  # it refers to them by name
    for name in ("Sentinel-2 true colour", "Crop map", "Cropland (probability)",
                 "Confidence (probability of the class)"):
        assert f'"{name}" : image_overlay_' in html

    # Same parameters again: instant, the pipeline does not run a second time.
    at = run_button(at).click().run()
    assert len(calls) == 1 and at.session_state["cropcore.run"] is result
    assert [s.label for s in at.get("status")] == [status.label]
    # Another session with the same parameters gets the same run at once, and is told so.
    other = run_button(page(CROP_MAP, monkeypatch, fake)).click().run()
    assert len(calls) == 1 and other.session_state["cropcore.run"] is result
    assert [s.label for s in other.get("status")] == [
        "Crop map ready at once: these settings were run before on this server"]
    # The opacity slider and the true-colour month change the map, not the run.
    at.slider(key="widget.opacity").set_value(0.3).run()
    at.selectbox(key="widget.true_colour_step").select(f"{result.axis[6]:%b %Y}").run()
    assert len(calls) == 1 and not at.exception
    # The run's status box stays (folded) on those reruns: the page below it does not move.
    assert [s.label for s in at.get("status")] == [status.label]
    assert '"opacity": 0.3' in fake.maps[-1].get_root().render()


def test_crop_map_uses_the_searched_area_and_dates(stac_api, monkeypatch):
    drawn = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[5.322, 50.630], [5.330, 50.630], [5.330, 50.636],
                                            [5.322, 50.636], [5.322, 50.630]]]}}]}
    from datetime import date
    searched = {"aoi": drawn, "datetime": (date(2021, 3, 1), date(2021, 10, 31)), "max_cloud": 50.0,
                "catalog": "local"}
    at = page(CROP_MAP, monkeypatch, **{"cropcore.aoi": drawn, "cropcore.aoi_source": "drawn",
                                        "cropcore.search_params": searched})
    assert "searched area (drawn)" in messages(at.caption)
    at = run_button(at).click().run()
    assert not at.exception and not at.error, messages(at.error)
    result = at.session_state["cropcore.run"]
    assert result.params.max_cloud == 50.0 and result.params.aoi == AOI.parse(drawn)
    assert result.prediction["class"].shape[1] < 106  # smaller than the whole demo patch


def test_an_area_without_scenes_is_a_one_line_error(stac_api, monkeypatch):
    kenya = {"type": "Polygon", "coordinates": [[[36.80, -1.30], [36.81, -1.30], [36.81, -1.29],
                                                  [36.80, -1.29], [36.80, -1.30]]]}
    at = page(CROP_MAP, monkeypatch, **{"cropcore.aoi": kenya, "cropcore.aoi_source": "uploaded"})
    at = run_button(at).click().run()
    assert not at.exception
    assert len(at.error) == 1 and "Traceback" not in at.error[0].value
    assert "cropcore.run" not in at.session_state
    assert at.get("status")[0].label == "The crop map could not be made"


def test_analysis_plots_areas_phenology_and_a_clicked_pixel(demo_run, monkeypatch):
    at = page(ANALYSIS, monkeypatch, FakeMap(CLICK), **{"cropcore.run": demo_run})
    assert not at.exception and not at.error, messages(at.error)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [c["layout"]["title"]["text"] for c in charts]
    assert titles[0] == "Area per class" and titles[1].startswith("NDVI phenology per class")
    assert titles[2].startswith("NDVI of the clicked pixel")
    bars = charts[0]["data"][0]
    hectares = at.dataframe[0].value
    assert sorted(bars["y"]) == sorted(hectares["class"])
    assert all(t.endswith("%") and " ha · " in t for t in bars["text"])
    assert hectares["hectares"].sum() == pytest.approx(
        (np.asarray(demo_run.prediction["class"]) != 255).sum() * 100 / 1e4)
    # The pixel's curve spans the model's time axis, beside its class's median.
    pixel = charts[2]["data"][-1]
    assert len(pixel["x"]) == len(demo_run.axis)
    assert "Pixel at 50.63320 N, 5.32620 E" in messages(at.caption)


def test_analysis_click_outside_the_map(demo_run, monkeypatch):
    at = page(ANALYSIS, monkeypatch, FakeMap({"lat": 50.7, "lng": 5.5}), **{"cropcore.run": demo_run})
    assert not at.exception
    assert "outside the mapped area" in messages(at.info)
    assert len(at.get("plotly_chart")) == 2


@pytest.mark.parametrize("path", [ANALYSIS, EXPORT])
def test_pages_without_a_run_point_to_the_crop_map(path, monkeypatch):
    at = page(path, monkeypatch)
    assert not at.exception
    assert "No crop map yet" in messages(at.info)


def test_export_offers_the_six_files(demo_run, monkeypatch):
    at = page(EXPORT, monkeypatch, **{"cropcore.run": demo_run})
    assert not at.exception and not at.error
    labels = [b.proto.label for b in at.get("download_button")]
    assert [label.split(" · ")[0] for label in labels] == [
        "Crop map (COG)", "Confidence (COG)", "Cropland probability (COG)", "Class areas (CSV)",
        "Area of interest (GeoJSON)", "Run manifest (JSON)"]
    from cropcore.ui.downloads import downloads

    files = {d.file_name: d.data for d in downloads(demo_run)}
    with MemoryFile(files["cropmap.tif"]) as mem, mem.open() as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255
        assert src.colormap(1)[1][:3] == tuple(int(demo_run.meta.colors[1][i:i + 2], 16) for i in (1, 3, 5))
        assert json.loads(src.tags()["CLASS_NAMES"]) == demo_run.meta.class_names
        manifest = json.loads(src.tags()["MANIFEST"])
    assert json.loads(files["cropmap.json"]) == manifest
    assert manifest["model"]["name"] == demo_run.meta.name
    with MemoryFile(files["cropmap_confidence.tif"]) as mem, mem.open() as src:
        assert src.dtypes[0] == "float32"
    with MemoryFile(files["cropmap_cropland.tif"]) as mem, mem.open() as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255
    assert files["cropmap_areas.csv"].decode().startswith("class_id,class,pixels,hectares,percent,kind")
    assert json.loads(files["cropmap_aoi.geojson"])["features"][0]["geometry"]["type"] == "Polygon"
    # the colour-blind-safe palette chosen in the session colours the downloaded COG's colour table too
    from cropcore.legend import CVD_PALETTE
    from cropcore.products.product import map_colors

    safe = {d.file_name: d.data for d in downloads(demo_run, palette=CVD_PALETTE)}
    with MemoryFile(safe["cropmap.tif"]) as mem, mem.open() as src:
        hex_colour = map_colors(demo_run.meta, palette=CVD_PALETTE)[1]
        assert src.colormap(1)[1][:3] == tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        assert src.colormap(1)[1][:3] != tuple(int(demo_run.meta.colors[1][i:i + 2], 16) for i in (1, 3, 5))
    at = page(EXPORT, monkeypatch, **{"cropcore.run": demo_run, "cropcore.palette": CVD_PALETTE})
    assert not at.exception and not at.error
    assert rasterio  # opened through MemoryFile above


def test_model_page_renders_the_card_and_benchmarks(monkeypatch):
    at = page(MODEL, monkeypatch)
    assert not at.exception and not at.warning
    table = at.dataframe[0].value
    assert {"tempcnn_worldcereal", "agrunet_worldcereal"} <= set(table["checkpoint"])
    text = messages(at.markdown)
    assert (settings.PROJECT_ROOT / "docs/MODEL_CARD.md").read_text().splitlines()[0].lstrip("# ") in text
    assert (settings.PROJECT_ROOT / "benchmarks/README.md").read_text().splitlines()[0].lstrip("# ") in text
    assert (settings.PROJECT_ROOT / "docs/MODEL_CARD_PATCHES.md").read_text().splitlines()[0].lstrip("# ") in text


def test_model_page_says_when_a_document_is_missing(monkeypatch):
    from pathlib import Path

    monkeypatch.setattr(modelcard, "MODEL_CARD", Path("docs") / "NO_SUCH_CARD.md")
    at = page(MODEL, monkeypatch)
    assert not at.exception
    assert "NO_SUCH_CARD.md is missing" in messages(at.warning)


@pytest.mark.parametrize(("n", "text"), [(812, "812 B"), (6_100, "6.1 kB"), (2_345_678, "2.3 MB")])
def test_file_sizes_for_people(n, text):
    from cropcore.ui.downloads import file_size

    assert file_size(n) == text


def legend_share(at: AppTest, name: str) -> float:
    """The percent the legend shows beside ``name``."""
    found = re.search(rf"{name}(?:</i>)?</span><span[^>]*>([0-9.]+) %", messages(at.get("html")))
    assert found, f"{name} is not in the legend"
    return float(found.group(1))


def test_the_min_confidence_slider_marks_uncertain_pixels_without_running_again(demo_run, monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "run", lambda *a, **kw: calls.append(a))
    fake = FakeMap()
    at = page(CROP_MAP, monkeypatch, fake, **{"cropcore.run": demo_run})
    confidence = demo_run.prediction["confidence"].values
    valid = demo_run.prediction["class"].values != NODATA
    default = demo_run.meta.calibration.min_confidence
    assert legend_share(at, "uncertain") == pytest.approx(100 * (confidence[valid] < default).mean(), abs=0.06)
    at.slider(key="widget.min_confidence.tempcnn_worldcereal").set_value(0.6).run()
    assert not at.exception and calls == []
    expected = 100 * (confidence[valid] < 0.6).mean()
    assert 1 < expected < 99 and legend_share(at, "uncertain") == pytest.approx(expected, abs=0.06)
    assert "confidence below 0.60" in messages(at.caption)
    assert at.session_state["cropcore.min_confidence"] == {"tempcnn_worldcereal": 0.6}
    # the crop-map overlay has the uncertain colour where the classes had their own
    from cropcore.ui.cropmap import class_image

    image, _ = class_image(demo_run.with_min_confidence(0.6))
    colour = map_colors(demo_run.meta)[UNCERTAIN]
    assert (image[..., :3] == [int(colour[i:i + 2], 16) for i in (1, 3, 5)]).all(-1).any()
    # back on the page later: the slider keeps its value
    at = page(CROP_MAP, monkeypatch, fake, **{"cropcore.run": demo_run, "cropcore.min_confidence":
                                             {"tempcnn_worldcereal": 0.6}})
    assert at.slider(key="widget.min_confidence.tempcnn_worldcereal").value == 0.6


def test_analysis_and_export_follow_the_min_confidence(demo_run, monkeypatch):
    threshold = {"cropcore.run": demo_run, "cropcore.min_confidence": {"tempcnn_worldcereal": 0.5}}
    prediction = demo_run.prediction
    uncertain = prediction.where((prediction["confidence"] < 0.5) & (prediction["class"] != NODATA), drop=True)
    x, y = float(uncertain["x"][0]), float(uncertain["y"].dropna("y")[0])
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(prediction["class"].rio.crs, "EPSG:4326", always_xy=True).transform(x, y)
    at = page(ANALYSIS, monkeypatch, FakeMap({"lat": lat, "lng": lon}), **threshold)
    assert not at.exception and not at.error, messages(at.error)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bars = charts[0]["data"][0]
    assert "uncertain" in bars["y"] and "cropland" not in bars["y"]
    assert bars["marker"]["color"][bars["y"].index("uncertain")] == map_colors(demo_run.meta)[UNCERTAIN]
    table = at.dataframe[0].value
    assert table["hectares"].sum() == pytest.approx((prediction["class"].values != NODATA).sum() * 100 / 1e4)
    assert any(t["name"].startswith("uncertain") for t in charts[1]["data"])  # phenology: a curve of its own
    assert charts[2]["layout"]["title"]["text"].startswith("NDVI of the clicked pixel: uncertain (most likely ")
    assert "Cropland, the crop classes without the uncertain pixels" in messages(at.caption)

    at = page(EXPORT, monkeypatch, **threshold)
    from cropcore.ui.downloads import downloads

    files = {d.file_name: d.data for d in downloads(demo_run.with_min_confidence(0.5))}  # what the page offers
    with MemoryFile(files["cropmap.tif"]) as mem, mem.open() as src:
        assert (src.read(1) == UNCERTAIN).any()
        assert json.loads(src.tags()["MANIFEST"])["calibration"]["min_confidence_source"] == "user"
    assert "below 0.50 are *uncertain*" in messages(at.caption)


@pytest.fixture
def calibrated_checkpoints(tmp_path, monkeypatch):
    """A checkpoint folder with the shipped default, calibrated, with reliability measurements (and a malformed one)."""
    from dataclasses import replace

    from cropcore.models import Calibration, checkpoint, load_checkpoint, save_checkpoint

    model, meta = load_checkpoint("tempcnn_worldcereal")
    reliability = {"confidence": [0.35, 0.55, 0.75, 0.95], "accuracy": [0.3, 0.52, 0.77, 0.93],
                   "count": [40, 120, 300, 800]}
    calibration = Calibration(temperature=1.5, min_confidence=0.62, target_precision=0.9, cropland_threshold=0.45,
                              fitted_on="validation split")
    metrics = {**meta.metrics, "calibration": {"ece_raw": 0.081, "ece": 0.023, "reliability": reliability}}
    save_checkpoint(tmp_path / "tempcnn_calibrated.pt", model, replace(meta, calibration=calibration, metrics=metrics))
    broken = {**meta.metrics, "calibration": {"reliability": {"confidence": [0.5], "accuracy": []}}}
    save_checkpoint(tmp_path / "tempcnn_malformed.pt", model, replace(meta, calibration=calibration, metrics=broken))
    monkeypatch.setattr(checkpoint, "CHECKPOINT_DIR", tmp_path)
    return tmp_path


def test_model_page_shows_the_calibration_and_its_reliability_diagram(calibrated_checkpoints, monkeypatch):
    at = page(MODEL, monkeypatch)
    assert not at.exception and not at.warning
    table = at.dataframe[0].value.set_index("checkpoint")
    assert table.loc["tempcnn_calibrated", "calibration"] == (
        "temperature 1.50, uncertain below 0.62, precision 0.90, cropland from 0.45")
    text = messages(at.markdown)
    assert "**Temperature 1.50**, fitted on validation split" in text and "precision **0.90**" in text
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["layout"]["title"]["text"] == "Reliability on held-out data (ECE before 0.081, after 0.023)"
    diagonal, curve = chart["data"]
    assert diagonal["x"] == [0, 1] and diagonal["y"] == [0, 1]
    assert curve["x"] == [0.35, 0.55, 0.75, 0.95] and curve["y"] == [0.3, 0.52, 0.77, 0.93]
    at.selectbox(key="widget.calibration_model").select("tempcnn_malformed").run()
    assert not at.exception
    assert "reliability measurements cannot be shown" in messages(at.warning)


def overlay_images(fig: Any) -> list[str]:
    """The data URLs of a map's image overlays, in order."""
    return re.findall(r'L\.imageOverlay\(\s*"(data:image/png;base64,[^"]+)"', fig.get_root().render())


def test_the_swipe_view_puts_true_colour_left_and_the_crop_map_right(demo_run, monkeypatch):
    fake = FakeMap()
    at = page(CROP_MAP, monkeypatch, fake, **{"cropcore.run": demo_run})
    assert "sideBySide" not in fake.maps[-1].get_root().render()
    at.radio(key="widget.map_view").set_value("Swipe: true colour | crop map").run()
    assert not at.exception
    html = fake.maps[-1].get_root().render()
    assert "L.control.sideBySide(" in html and html.count("L.imageOverlay(") == 2
    assert '"pane": "swipe-left"' in html and '"pane": "swipe-right"' in html
    assert "maplegend" in html and "winter cereals" in html  # leafmap's legend on the map


def test_the_month_slider_changes_the_overlay_and_marks_the_curve(demo_run, monkeypatch):
    fake = FakeMap(CLICK)
    at = page(ANALYSIS, monkeypatch, fake, **{"cropcore.run": demo_run})
    assert not at.exception and not at.error, messages(at.error)
    months = [f"{t:%b %Y}" for t in demo_run.axis]
    slider = at.select_slider(key="widget.season_month")
    assert slider.options == months and slider.value == months[0]
    first = overlay_images(fake.maps[-1])
    at.select_slider(key="widget.season_month").set_value(months[6]).run()
    assert not at.exception
    sixth = overlay_images(fake.maps[-1])
    assert first[0] != sixth[0] and first[1] == sixth[1]  # the composite changed, the crop map did not
    assert f"Sentinel-2 true colour {months[6]}" in fake.maps[-1].get_root().render()
    chart = json.loads(at.get("plotly_chart")[2].proto.spec)
    assert chart["layout"]["annotations"][0]["text"] == f"{months[6]} on the map"
    at.radio(key="widget.season_layer").set_value("NDVI").run()
    html = fake.maps[-1].get_root().render()
    assert f"NDVI {months[6]}" in html and "very dense" in html  # NDVI overlay and its legend
    assert overlay_images(fake.maps[-1])[0] != sixth[0]


def test_the_colour_blind_safe_palette_colours_map_legend_and_plots(demo_run, monkeypatch):
    from cropcore.legend import CVD_PALETTE, OKABE_ITO

    fake = FakeMap(CLICK)
    at = page(CROP_MAP, monkeypatch, fake, **{"cropcore.run": demo_run})
    default_map = overlay_images(fake.maps[-1])[1]
    at.toggle(key="widget.palette").set_value(True).run()
    assert not at.exception and at.session_state["cropcore.palette"] == CVD_PALETTE
    legend = messages(at.get("html"))
    assert OKABE_ITO[2] in legend and demo_run.meta.colors[2] not in legend
    assert overlay_images(fake.maps[-1])[1] != default_map
    assert f"background:{OKABE_ITO[1]}" in fake.maps[-1].get_root().render()  # leafmap's legend on the map
    # the Analysis page follows, its toggle on
    at = page(ANALYSIS, monkeypatch, fake, **{"cropcore.run": demo_run, "cropcore.palette": CVD_PALETTE})
    assert at.toggle(key="widget.palette").value is True
    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    names = demo_run.meta.class_names
    assert set(bars["marker"]["color"]) - {map_colors(demo_run.meta, CVD_PALETTE)[UNCERTAIN]} <= set(OKABE_ITO)
    for name, colour in zip(bars["y"], bars["marker"]["color"], strict=True):
        assert name == "uncertain" or colour == OKABE_ITO[names.index(name)]
