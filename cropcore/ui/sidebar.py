"""The sidebar every page shares: catalog choice with its health, and what the session holds so far."""

from __future__ import annotations

import streamlit as st

from cropcore.errors import CropcoreError
from cropcore.stac import server as stac_server
from cropcore.stac.catalog import CATALOG_NAMES, resolve_catalog
from cropcore.ui import state

CUSTOM_URL = "custom URL"
_LABELS = {"local": "local (embedded catalog)", "earth-search": "Earth Search (Element84)",
           "planetary-computer": "Planetary Computer", "copernicus": "Copernicus Data Space (S3 keys needed)",
           CUSTOM_URL: "custom STAC API URL"}


@st.cache_data(ttl=20, show_spinner=False)
def catalog_healthy(url: str) -> bool:
    """Whether the STAC API at ``url`` answers its landing page within 1.5 s (cached for 20 s)."""
    return stac_server.healthy(url, timeout=1.5)


def _start_local() -> None:
    with st.spinner("Starting the embedded catalog (PostgreSQL + STAC API)..."):
        try:
            stac_server.serve()
        except CropcoreError as exc:
            st.error(f"Could not start the local catalog: {exc}")
            return
    catalog_healthy.clear()
    st.rerun()


def catalog_health(catalog: str) -> bool:
    """Show the catalog's URL and health; offer to start the embedded one when it is down."""
    try:
        url = resolve_catalog(catalog).url
    except CropcoreError as exc:
        st.error(str(exc))
        return False
    if catalog_healthy(url):
        st.success(f"Catalog online: {url}", icon=":material/check_circle:")
        return True
    if catalog == "local":
        st.warning(f"The local catalog is not running ({url}).", icon=":material/warning:")
        if st.button("Start the local catalog", key="start_local_catalog"):
            _start_local()
    else:
        st.warning(f"Catalog unreachable: {url} (no answer within 1.5 s). Without internet, choose the local "
                   "catalog: it works offline.", icon=":material/cloud_off:")
    return False


def embedded_status() -> None:
    """The embedded catalog's state: built, database running, API answering."""
    status = stac_server.status()
    cols = st.columns(3)
    cols[0].metric("Catalog built", "yes" if status["built"] else "no")
    cols[1].metric("Database", "running" if status["postgres"] else "stopped")
    cols[2].metric("STAC API", "online" if status["healthy"] else "offline")
    st.caption(f"Embedded STAC API: {status['url']}. Start it with `python -m cropcore catalog serve` "
               "or from the sidebar.")


def catalog_selector() -> str:
    """Catalog selection (name or URL), remembered in the session."""
    choices = [*CATALOG_NAMES, CUSTOM_URL]
    choice = st.selectbox("STAC catalog", choices, key=state.CATALOG_CHOICE, format_func=_LABELS.get)
    catalog = choice
    if choice == CUSTOM_URL:
        catalog = st.text_input("STAC API URL", key=state.CATALOG_URL, placeholder="https://.../v1").strip()
    st.session_state[state.CATALOG] = catalog
    return catalog


#: The dashboard's pages as (script, label, icon); Streamlit's own page list is hidden (.streamlit/config.toml)
#: because it would name the landing page after its file, "app".
PAGES = (
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Search.py", "Search", ":material/search:"),
    ("pages/2_Crop_map.py", "Crop map", ":material/map:"),
    ("pages/3_Fields.py", "Fields", ":material/grid_on:"),
    ("pages/4_Analysis.py", "Analysis", ":material/monitoring:"),
    ("pages/5_Export.py", "Export", ":material/download:"),
    ("pages/6_Model.py", "Model", ":material/model_training:"),
    ("pages/7_Train.py", "Train", ":material/school:"),
)


def navigation() -> None:
    """Links to every page, with titles and icons."""
    for script, label, icon in PAGES:
        st.page_link(script, label=label, icon=icon)


def render() -> tuple[str, bool]:
    """Draw the shared sidebar (pages, catalog); return the chosen catalog and whether it answers."""
    with st.sidebar:
        navigation()
        st.divider()
        st.header("Catalog")
        catalog = catalog_selector()
        healthy = bool(catalog) and catalog_health(catalog)
    return catalog, healthy


def session_summary() -> None:
    """What the session holds so far (call it last, after the page has updated the state)."""
    with st.sidebar:
        st.header("Session")
        source = st.session_state.get(state.AOI_SOURCE) if state.get_aoi() else None
        st.caption(f"Area of interest: {source or 'none yet'}")
        result = state.get_search()
        st.caption(f"Scenes found: {len(result.items)}" if result else "Scenes found: no search yet")
        run = state.get_run()
        st.caption(f"Crop map: {run.meta.name}, {run.axis[0]:%b %Y} to {run.axis[-1]:%b %Y}" if run
                   else "Crop map: not made yet")
