"""Session-state keys, defined once, and typed accessors for what pages hand to each other."""

from __future__ import annotations

from typing import Any

import streamlit as st

from cropcore.pipeline import RunResult
from cropcore.stac.catalog import SearchResult

AOI = "cropcore.aoi"  # GeoJSON FeatureCollection of the area of interest (lon/lat)
AOI_SOURCE = "cropcore.aoi_source"  # "drawn", "uploaded" or "demo"
CATALOG = "cropcore.catalog"  # catalog name ("local", ...) or STAC API URL
SEARCH = "cropcore.search"  # SearchResult of the last search
SEARCH_PARAMS = "cropcore.search_params"  # the parameters that produced SEARCH
LAST_DRAWN = "cropcore.last_drawn"  # last drawing seen on the map (to tell a new drawing from a rerun)
LAST_UPLOAD = "cropcore.last_upload"  # last uploaded AOI seen (same purpose)
RUN = "cropcore.run"  # RunResult of the last crop-map run (Crop map, Analysis, Export pages)
RUN_SUMMARY = "cropcore.run_summary"  # (RunResult, "Crop map ready in ...") of the last run made here
MIN_CONFIDENCE = "cropcore.min_confidence"  # {checkpoint name: minimum confidence chosen on the Crop map page}
OWN_MODEL = "cropcore.own_model"  # OwnModel of the last training on the Train page
CLICKED = "cropcore.clicked"  # (lat, lon) last clicked on the Analysis map
PALETTE = "cropcore.palette"  # class palette name (cropcore.legend.PALETTES) chosen in this session

# Widget keys
CATALOG_CHOICE = "widget.catalog_choice"
CATALOG_URL = "widget.catalog_url"
SEASON = "widget.season"
SEASON_YEAR = "widget.season_year"
DATES = "widget.dates"
MAX_CLOUD = "widget.max_cloud"
UPLOAD = "widget.aoi_upload"
SEARCH_MAP = "widget.search_map"
MODEL = "widget.model"
OPACITY = "widget.opacity"
TRUE_COLOUR_STEP = "widget.true_colour_step"
CROP_MAP = "widget.crop_map"
MAP_VIEW = "widget.map_view"
PALETTE_TOGGLE = "widget.palette"
SEASON_MONTH = "widget.season_month"
SEASON_LAYER = "widget.season_layer"
MIN_CONFIDENCE_SLIDER = "widget.min_confidence"  # + "." + checkpoint name
CALIBRATION_MODEL = "widget.calibration_model"
ANALYSIS_MAP = "widget.analysis_map"
TRAIN_UPLOAD = "widget.train_upload"
TRAIN_COLUMN = "widget.train_column"
TRAIN_YEAR = "widget.train_year"
TRAIN_NAME = "widget.train_name"  # + "." + label file name + "." + season year
TRAIN_CROPS = "widget.train_crops"
TRAIN_EPOCHS = "widget.train_epochs"


def get_aoi() -> dict[str, Any] | None:
    """The current AOI as GeoJSON, or None."""
    return st.session_state.get(AOI)


def set_aoi(geojson: dict[str, Any] | None, source: str) -> None:
    """Replace the AOI; a new AOI invalidates the last search."""
    if geojson != st.session_state.get(AOI):
        st.session_state.pop(SEARCH, None)
        st.session_state.pop(SEARCH_PARAMS, None)
    st.session_state[AOI] = geojson
    st.session_state[AOI_SOURCE] = source


def get_search() -> SearchResult | None:
    """The last search result, or None."""
    return st.session_state.get(SEARCH)


def set_search(result: SearchResult, params: dict[str, Any]) -> None:
    """Keep a search result (and what produced it) for the later pages."""
    st.session_state[SEARCH] = result
    st.session_state[SEARCH_PARAMS] = params


def get_run() -> RunResult | None:
    """The last crop-map run, or None."""
    return st.session_state.get(RUN)


def require_run() -> RunResult | None:
    """The last crop-map run; without one, say so and link to the Crop map page."""
    result = get_run()
    if result is None:
        st.info("No crop map yet: make one first.")
        st.page_link("pages/2_Crop_map.py", label="Go to Crop map", icon=":material/map:")
    return result


def set_run(result: RunResult) -> None:
    """Keep a crop-map run for the Analysis and Export pages."""
    st.session_state[RUN] = result
