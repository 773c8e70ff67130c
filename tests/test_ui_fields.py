"""The Fields page headless (streamlit AppTest): the demo run from the real embedded STAC API, real parcel files
uploaded, ``st_folium`` replaced by a fake that records the map and returns a click."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely
from streamlit.testing.v1 import AppTest
from test_ui_pages import FakeMap, messages

from cropcore import pipeline, settings
from cropcore.products.product import map_colors
from cropcore.ui import map as ui_map
from cropcore.ui.runs import DEMO_DATES
from cropcore.ui.search import DEMO_AOI

APP = settings.PROJECT_ROOT / "app.py"
FIELDS = "pages/3_Fields.py"
DEMO = (5.3189, 50.6286, 5.3334, 50.6378)


@pytest.fixture(scope="module")
def demo_run(stac_api) -> pipeline.RunResult:
    return pipeline.run(pipeline.RunParams(DEMO_AOI, *DEMO_DATES, catalog="local"))


def fields_page(monkeypatch: pytest.MonkeyPatch, fake: FakeMap, **session: Any) -> AppTest:
    monkeypatch.setattr(ui_map, "st_folium", fake)
    at = AppTest.from_file(str(APP), default_timeout=120)
    for key, value in session.items():
        at.session_state[key] = value
    return at.switch_page(FIELDS).run()


def grid_file(suffix: str = ".gpkg", n: int = 4) -> bytes:
    """``n`` x ``n`` rectangles over the demo AOI bbox, plus one far away, as a file's bytes."""
    w, s, e, north = DEMO
    xs, ys = np.linspace(w, e, n + 1), np.linspace(s, north, n + 1)
    geoms = [shapely.box(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(n) for i in range(n)]
    geoms.append(shapely.box(6.0, 51.0, 6.01, 51.01))
    gdf = gpd.GeoDataFrame({"field": [f"F{i}" for i in range(len(geoms))]}, geometry=geoms, crs=4326)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("fields.shp" if suffix == ".zip" else f"fields{suffix}")
        gdf.to_parquet(path) if suffix == ".parquet" else gdf.to_file(path)
        if suffix != ".zip":
            return path.read_bytes()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            for part in Path(folder).iterdir():
                z.write(part, part.name)
        return buffer.getvalue()


def labels(at: AppTest) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def test_without_a_run_the_page_points_to_the_crop_map(monkeypatch):
    at = fields_page(monkeypatch, FakeMap())
    assert not at.exception
    assert "No crop map yet" in messages(at.info)


def test_upload_parcels_see_the_table_the_map_and_a_parcel_curve(demo_run, monkeypatch):
    fake = FakeMap()
    at = fields_page(monkeypatch, fake, **{"cropcore.run": demo_run})
    assert not at.exception and not at.error, messages(at.error)
    assert "Upload a parcel file" in messages(at.info)
    assert "Field polygons:" in messages(at.caption)
    # Without parcels: the polygon downloads only.
    assert [label.split(" · ")[0] for label in labels(at)] == [
        "Field polygons (GeoPackage)", "Field polygons (GeoParquet)", "Field polygons (GeoJSON)"]

    at = at.get("file_uploader")[0].upload("my fields.gpkg", grid_file(), "application/geopackage+sqlite3").run()
    assert not at.exception and not at.error, messages(at.error)
    assert "17 parcels: 16 mapped, 1 outside the map (no statistics)" in messages(at.success)
    rows = at.dataframe[0].value
    assert len(rows) == 17 and {"parcel", "status", "class", "majority_share", "confidence", "uncertain_share",
                                "area_ha", "field"} <= set(rows.columns)
    assert not any(c.startswith("ndvi_") for c in rows.columns)
    html = fake.maps[-1].get_root().render()
    assert "Parcels (majority class)" in html and "Field polygons (vectorised map)" in html
    assert html.count('"pane": "shadowPane"') == 2  # parcels and polygons above the imagery and the crop map
    colors = map_colors(demo_run.meta)
    majority = rows.loc[rows["status"] == "ok", "class_id"].astype(int)
    assert all(colors[c] in html for c in majority)
    assert [label.split(" · ")[0] for label in labels(at)][:2] == ["Parcels (GeoPackage)", "Parcels (GeoParquet)"]
    assert "Click a parcel on the map" in messages(at.info)

    # A click inside the parcel at the south-west corner: its NDVI curve beside its class's median.
    fake.click = {"lat": 50.6290, "lng": 5.3195}
    at = at.run()
    assert not at.exception
    chart = at.get("plotly_chart")[0]
    assert "NDVI median of parcel 1" in chart.proto.spec
    assert "Parcel 1 (ok" in messages(at.caption)
    fake.click = {"lat": 50.70, "lng": 5.40}
    at = at.run()
    assert "No parcel there" in messages(at.info)


def test_the_mmu_changes_the_polygons(demo_run, monkeypatch):
    at = fields_page(monkeypatch, FakeMap(), **{"cropcore.run": demo_run})
    before = messages(at.caption)
    at = at.number_input(key="widget.fields_mmu").set_value(1.0).run()
    assert not at.exception
    assert "minimum mapping unit 1 ha = 100 pixels" in messages(at.caption) and before != messages(at.caption)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("fields.gpkg", b"not a geopackage" * 20, "not a readable GeoPackage"),
    ("fields.zip", b"PK\x05\x06" + b"\0" * 18, "the zip must hold one .shp"),
    ("fields.parquet", b"PAR1 broken", "not a readable Parquet file"),
    ("fields.geojson", b'{"type": "FeatureCollection", "features": []}', "holds no parcels"),
])
def test_a_bad_upload_is_a_short_error(demo_run, monkeypatch, name, content, message):
    at = fields_page(monkeypatch, FakeMap(), **{"cropcore.run": demo_run})
    at = at.get("file_uploader")[0].upload(name, content, "application/octet-stream").run()
    assert not at.exception
    assert message in messages(at.error)
    assert not at.dataframe


def test_a_zipped_shapefile_and_geoparquet_work_too(demo_run, monkeypatch):
    for name, suffix in (("fields.zip", ".zip"), ("fields.parquet", ".parquet")):
        at = fields_page(monkeypatch, FakeMap(), **{"cropcore.run": demo_run})
        at = at.get("file_uploader")[0].upload(name, grid_file(suffix), "application/octet-stream").run()
        assert not at.exception and not at.error, messages(at.error)
        assert "17 parcels: 16 mapped" in messages(at.success)
