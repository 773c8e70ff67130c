"""The dashboard pages headless (streamlit AppTest), against the real embedded STAC API."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from cropcore import settings
from cropcore.stac.catalog import search_items
from cropcore.ui import map as ui_map

APP = settings.PROJECT_ROOT / "app.py"
SEARCH_PAGE = "pages/1_Search.py"
# A polygon inside the WorldCereal demo patch, as leaflet.draw returns it (lon, lat).
DRAWN = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
    [5.322, 50.630], [5.330, 50.630], [5.330, 50.636], [5.322, 50.636], [5.322, 50.630]]]}}
BOWTIE = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
    [5.322, 50.630], [5.330, 50.636], [5.330, 50.630], [5.322, 50.636], [5.322, 50.630]]]}}


class FakeMap:
    """Stands in for ``st_folium``: returns the given drawings and records what the page passed."""

    def __init__(self, *drawings: dict[str, Any]) -> None:
        self.drawings = list(drawings)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, fig: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"all_drawings": self.drawings or None,
                "last_active_drawing": self.drawings[-1] if self.drawings else None}


def search_page(monkeypatch: pytest.MonkeyPatch | None = None, fake: FakeMap | None = None) -> AppTest:
    if monkeypatch is not None and fake is not None:
        monkeypatch.setattr(ui_map, "st_folium", fake)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.switch_page(SEARCH_PAGE)
    return at.run()


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def messages(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def test_landing_page_renders(stac_api):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "cropcore"
    assert {m.label: m.value for m in at.metric}["STAC API"] == "online"
    assert "Catalog online" in messages(at.success)


def test_drawn_aoi_lists_the_demo_scenes(stac_api, monkeypatch):
    fake = FakeMap(DRAWN)
    at = search_page(monkeypatch, fake)
    assert not at.exception and not at.error
    assert button(at, "Search scenes").disabled is False
    at = button(at, "Search scenes").click().run()
    assert not at.exception and not at.error, messages(at.error)
    expected = search_items(DRAWN, ("2020-11-01", "2021-10-31"), max_cloud=80, catalog=stac_api)
    table = at.dataframe[0].value
    assert list(table["id"]) == list(expected.table["id"])
    assert len(table) >= 10
    # The footprints go to the map as an extra layer, and the result is kept for the later pages.
    assert fake.calls[-1]["feature_group_to_add"]
    assert len(at.session_state["cropcore.search"].items) == len(table)


def test_self_intersecting_aoi_shows_an_error(stac_api, monkeypatch):
    at = search_page(monkeypatch, FakeMap(BOWTIE))
    assert not at.exception
    assert "Invalid area of interest" in messages(at.error)
    assert "Traceback" not in messages(at.error)
    assert button(at, "Search scenes").disabled is True


def test_demo_area_button_sets_the_aoi(stac_api, monkeypatch):
    at = search_page(monkeypatch, FakeMap())
    assert "Draw a rectangle" in messages(at.info)
    at = button(at, "Use the demo area").click().run()
    assert at.session_state["cropcore.aoi_source"] == "demo"
    at = button(at, "Search scenes").click().run()
    assert not at.error and len(at.dataframe[0].value) >= 10


def test_a_dead_catalog_url_is_reported_without_waiting(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    at = search_page(monkeypatch, FakeMap(DRAWN))
    at.selectbox(key="widget.catalog_choice").select("custom URL").run()
    at = at.text_input(key="widget.catalog_url").input(f"http://127.0.0.1:{port}/").run()
    assert not at.exception
    assert "unreachable" in messages(at.warning)
    assert button(at, "Search scenes").disabled is True


def test_map_loads_only_local_assets(stac_api):
    at = search_page()
    component = at.get("component_instance")[0].proto
    assert component.component_name == "streamlit_folium.st_folium"
    args = json.loads(component.json_args)
    links = args["js_links"] + args["css_links"]
    assert any(link.endswith("leaflet.js") for link in links)
    assert any(link.endswith("leaflet.draw.js") for link in links)
    static = APP.parent / "static"
    for link in links:
        assert link.startswith("/app/static/vendor/"), link
        assert (static / link.removeprefix("/app/static/")).stat().st_size > 1000
    # Nothing else in the map pulls a script or stylesheet from elsewhere.
    remote = re.findall(r'(?:src|href)=["\'](https?://[^"\']+)', args["header"] + args["html"] + args["script"])
    assert remote == []
    # The online basemap exists only as a layer that starts switched off (never added to the map).
    osm = re.search(r"var (tile_layer_\w+) = L\.tileLayer\(\s*\"https://tile\.openstreetmap", args["script"])
    assert osm is not None
    assert f"{osm.group(1)}.addTo(" not in args["script"]


def test_importing_cropcore_does_not_import_streamlit():
    code = ("import sys, cropcore, cropcore.stac.catalog, cropcore.aoi, cropcore.stac.server; "
            "sys.exit('streamlit' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(APP).parent).returncode == 0


def test_a_stopped_local_catalog_offers_to_start_it(monkeypatch):
    from cropcore.errors import ServiceError
    from cropcore.stac import server as stac_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("CROPCORE_STAC_PORT", str(sock.getsockname()[1]))
    calls = []

    def failing_serve() -> str:
        calls.append(True)
        raise ServiceError("PostgreSQL is not installed")

    monkeypatch.setattr(stac_server, "serve", failing_serve)
    at = search_page(monkeypatch, FakeMap(DRAWN))
    assert "local catalog is not running" in messages(at.warning)
    assert button(at, "Search scenes").disabled is True
    at = button(at, "Start the local catalog").click().run()
    assert calls and not at.exception
    assert "Could not start the local catalog: PostgreSQL is not installed" in messages(at.error)


def test_uploaded_geojson_becomes_the_aoi(stac_api, monkeypatch):
    fake = FakeMap()
    at = search_page(monkeypatch, fake)
    content = json.dumps({"type": "FeatureCollection", "features": [DRAWN]}).encode()
    at = at.get("file_uploader")[0].upload("field.geojson", content, "application/geo+json").run()
    assert not at.exception and not at.error, messages(at.error)
    assert at.session_state["cropcore.aoi_source"] == "uploaded"
    assert fake.calls[-1]["feature_group_to_add"]  # drawn on the map
    assert fake.calls[-1]["center"] == pytest.approx((50.633, 5.326))  # and the map moves to it
    at = button(at, "Search scenes").click().run()
    assert len(at.dataframe[0].value) >= 10


@pytest.mark.parametrize(("content", "message"), [
    (b"\x89PNG not json", "not GeoJSON"),
    (b"[1, 2, 3]", "not a GeoJSON object"),
    (json.dumps(BOWTIE).encode(), "Invalid area of interest"),
    (json.dumps({"type": "Point", "coordinates": [5.3, 50.6]}).encode(), "Invalid area of interest"),
])
def test_a_bad_upload_is_a_short_error(monkeypatch, content, message):
    at = search_page(monkeypatch, FakeMap())
    at = at.get("file_uploader")[0].upload("bad.geojson", content, "application/geo+json").run()
    assert not at.exception
    assert message in messages(at.error)


def test_an_oversized_upload_is_refused(monkeypatch):
    at = search_page(monkeypatch, FakeMap())
    big = json.dumps({**DRAWN, "properties": {"padding": "x" * 2_000_000}}).encode()
    at = at.get("file_uploader")[0].upload("big.geojson", big, "application/geo+json").run()
    assert not at.exception
    assert "the limit is 1 MB" in messages(at.error)
    assert "cropcore.aoi" not in at.session_state


def test_quicklooks_become_data_urls(stac_api, tmp_path):
    from cropcore.stac.catalog import search_items
    from cropcore.ui.search import quicklook_url

    href = search_items((5.322, 50.630, 5.330, 50.636), "2021-06-01/2021-06-30", catalog=stac_api).table["quicklook"][0]
    url = quicklook_url(href)
    assert url.startswith("data:image/png;base64,") and len(url) > 1000
    assert quicklook_url("https://example.org/thumb.jpg") == "https://example.org/thumb.jpg"
    assert quicklook_url((tmp_path / "missing.png").as_uri()) is None and quicklook_url(None) is None


@pytest.mark.parametrize("catalog", ["earth-search", "planetary-computer", "copernicus"])
def test_a_public_catalog_without_internet_is_one_box(monkeypatch, catalog):
    import time

    from cropcore.stac.catalog import resolve_catalog

    with socket.socket() as sock:  # the internet behind a proxy that is not there; loopback stays direct
        sock.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    at = search_page(monkeypatch, FakeMap(DRAWN))
    t0 = time.monotonic()
    at = at.selectbox(key="widget.catalog_choice").select(catalog).run()
    assert time.monotonic() - t0 < 10
    assert not at.exception
    boxes = [str(b.value) for b in [*at.error, *at.warning]]
    assert len(boxes) == 1 and resolve_catalog(catalog).url in boxes[0], boxes
    assert button(at, "Search scenes").disabled is True
