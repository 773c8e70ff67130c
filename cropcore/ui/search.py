"""Widgets of the Search page: AOI (drawn, uploaded or the demo area), dates, cloud limit, results."""

from __future__ import annotations

import base64
import json
from datetime import date
from pathlib import Path
from typing import Any

import streamlit as st
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from cropcore.aoi import AOI, MAX_GEOJSON_BYTES
from cropcore.errors import CropcoreError
from cropcore.stac.catalog import SearchResult, search_items
from cropcore.ui import state
from cropcore.ui.map import DEMO_BBOX, aoi_layer, base_map, footprints_layer, show_map
from cropcore.ui.seasons import CUSTOM, SEASONS, season_range

MAX_UPLOAD_MB = MAX_GEOJSON_BYTES // 2**20
DEFAULT_SEASON, DEFAULT_YEAR = "Agricultural year (Nov-Oct)", 2021
DEFAULT_MAX_CLOUD = 80


def as_feature_collection(geometry: dict[str, Any]) -> dict[str, Any]:
    """Wrap a GeoJSON geometry into a FeatureCollection."""
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": geometry}]}


DEMO_AOI = as_feature_collection(mapping(box(*DEMO_BBOX)))


def upload_aoi() -> dict[str, Any] | None:
    """A GeoJSON file upload (at most ``MAX_UPLOAD_MB``); returns its content, or None (errors are shown)."""
    upload = st.file_uploader("...or upload a GeoJSON polygon", type=["geojson", "json"], key=state.UPLOAD,
                              max_upload_size=MAX_UPLOAD_MB)
    if upload is None:
        return None
    if upload.size > MAX_UPLOAD_MB * 1024 * 1024:
        st.error(f"{upload.name} is {upload.size / 1024**2:.1f} MB; the limit is {MAX_UPLOAD_MB} MB. "
                 "Simplify the polygon or upload only the field boundary.")
        return None
    try:
        content = json.loads(upload.getvalue())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        st.error(f"{upload.name} is not GeoJSON: {exc}")
        return None
    if not isinstance(content, dict):
        st.error(f"{upload.name} is not a GeoJSON object")
        return None
    return content


def take_upload(uploaded: dict[str, Any] | None) -> None:
    """A newly uploaded AOI replaces the current one (a rerun with the same file changes nothing)."""
    if uploaded is not None and uploaded != st.session_state.get(state.LAST_UPLOAD):
        st.session_state[state.LAST_UPLOAD] = uploaded
        state.set_aoi(uploaded, "uploaded")


def take_drawing(drawn: dict[str, Any] | None) -> None:
    """A new drawing replaces the current AOI."""
    if drawn is not None and drawn != st.session_state.get(state.LAST_DRAWN):
        st.session_state[state.LAST_DRAWN] = drawn
        state.set_aoi(drawn, "drawn")


def use_demo_area() -> None:
    """A button that makes the demo area the AOI."""
    if st.button("Use the demo area", help="The WorldCereal patch in Belgium that the local catalog covers"):
        state.set_aoi(DEMO_AOI, "demo")


def _geometry(aoi: dict[str, Any] | None) -> BaseGeometry | None:
    try:
        return AOI.parse(aoi).geometry if aoi is not None else None
    except CropcoreError:
        return None


def check_aoi(aoi: dict[str, Any] | None) -> bool:
    """Validate the AOI; show its area, or why it cannot be used."""
    if aoi is None:
        st.info("Draw a rectangle or polygon on the map (tools at the top left), upload a GeoJSON file, "
                "or use the demo area.")
        return False
    try:
        parsed = AOI.parse(aoi)
    except CropcoreError as exc:
        st.error(f"Invalid area of interest: {exc}")
        return False
    st.caption(f"Area of interest ({st.session_state.get(state.AOI_SOURCE)}): {parsed.area_km2 * 100:,.1f} ha")
    return True


def date_range() -> tuple[date, date]:
    """Season preset + year, or custom dates."""
    season = st.selectbox("Season", [*SEASONS, CUSTOM], key=state.SEASON,
                          index=list(SEASONS).index(DEFAULT_SEASON))
    today = date.today()
    if season == CUSTOM:
        picked = st.date_input("Dates", value=season_range(DEFAULT_SEASON, DEFAULT_YEAR), key=state.DATES,
                               max_value=today)
        if len(picked) != 2:
            st.info("Pick an end date too.")
            return picked[0], picked[0]
        return picked[0], picked[1]
    year = st.number_input("Season ending in", min_value=2015, max_value=today.year, step=1,
                           value=DEFAULT_YEAR, key=state.SEASON_YEAR)
    start, end = season_range(season, int(year))
    if end > today:
        end = today
        st.caption(f"{start:%Y-%m-%d} to {end:%Y-%m-%d} (the season is not over: it ends today for now)")
    else:
        st.caption(f"{start:%Y-%m-%d} to {end:%Y-%m-%d}")
    return start, end


def max_cloud() -> float | None:
    """Cloud limit in percent (None at 100: no filter)."""
    value = st.slider("Maximum cloud cover (%)", 0, 100, DEFAULT_MAX_CLOUD, step=5, key=state.MAX_CLOUD)
    return None if value >= 100 else float(value)


@st.cache_data(ttl=300, show_spinner=False)
def _search(aoi_json: str, start: date, end: date, cloud: float | None, catalog: str) -> SearchResult:
    return search_items(json.loads(aoi_json), (start, end), max_cloud=cloud, catalog=catalog,
                        timeout=10.0, retries=1)


def search_button(dates: tuple[date, date], cloud: float | None, catalog: str, *, ready: bool) -> None:
    """The search button; a result is kept in the session (and drawn after a rerun), errors are shown."""
    if not st.button("Search scenes", type="primary", disabled=not ready,
                     help=None if ready else "Needs a valid area of interest and a reachable catalog"):
        return
    aoi = state.get_aoi()
    with st.spinner("Searching the catalog..."):
        try:
            result = _search(json.dumps(aoi, sort_keys=True), *dates, cloud, catalog)
        except CropcoreError as exc:
            st.error(str(exc))
            return
    state.set_search(result, {"aoi": aoi, "datetime": dates, "max_cloud": cloud, "catalog": catalog})
    st.rerun()


def search_map() -> dict[str, Any] | None:
    """The map with the draw tool, the current AOI (when not drawn) and the last search's footprints."""
    layers, fit = [], None
    geom = _geometry(state.get_aoi())
    if geom is not None and st.session_state.get(state.AOI_SOURCE) != "drawn":
        layers.append(aoi_layer(mapping(geom)))
        fit = geom.bounds
    result = state.get_search()
    if result is not None:
        layers.append(footprints_layer(item.to_dict() for item in result.items))
    return show_map(base_map(), key=state.SEARCH_MAP, layers=layers, fit=fit)


def quicklook_url(href: str | None) -> str | None:
    """A URL the browser can show: local files become data URLs, remote ones pass through."""
    if not href or not href.startswith("file://"):
        return href
    path = Path(href.removeprefix("file://"))
    if not path.is_file() or path.stat().st_size > 512 * 1024:
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def results() -> None:
    """The scenes table of the last search."""
    result = state.get_search()
    if result is None:
        return
    table = result.table
    st.subheader(f"{len(table)} scenes")
    st.caption(f"from {result.url}, {table['datetime'].min():%Y-%m-%d} to {table['datetime'].max():%Y-%m-%d}")
    st.dataframe(
        table.assign(quicklook=table["quicklook"].map(quicklook_url)), hide_index=True, width="stretch",
        column_config={
            "quicklook": st.column_config.ImageColumn("quicklook"),
            "datetime": st.column_config.DatetimeColumn("date", format="YYYY-MM-DD"),
            "cloud_cover": st.column_config.ProgressColumn("cloud %", min_value=0, max_value=100, format="%.0f"),
        },
    )
    st.download_button("Download the scenes (GeoJSON)", json.dumps(result.items.to_dict()),
                       file_name="scenes.geojson", mime="application/geo+json")
