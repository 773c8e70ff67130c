"""The crop map on a Leaflet map: class, confidence and true-colour overlays, legend, layer switcher."""

from __future__ import annotations

import html

import folium
import numpy as np
import pandas as pd
import streamlit as st
from shapely.geometry import mapping

from cropcore.inference.options import NODATA
from cropcore.pipeline import RunResult
from cropcore.products.stats import class_areas
from cropcore.ui import state
from cropcore.ui.map import aoi_layer, base_map, fit_zoom, show_view_map
from cropcore.ui.overlay import (
    Bounds,
    class_rgba,
    latlon_bounds,
    scalar_rgba,
    stretch,
    to_web_mercator,
    true_colour,
)
from cropcore.ui.runs import BY_RUN

MEDIAN = "season median"


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner=False)
def areas(result: RunResult) -> pd.DataFrame:
    """Hectares and percent per class of a run."""
    return class_areas(result.prediction["class"], result.meta.class_names, nodata=NODATA)


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner=False)
def class_image(result: RunResult) -> tuple[np.ndarray, Bounds]:
    """RGBA class map in Web Mercator and its lon/lat corners."""
    merc = to_web_mercator(result.prediction["class"], nodata=NODATA, categorical=True)
    return class_rgba(merc.values, result.meta.colors, nodata=NODATA), latlon_bounds(merc)


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner=False)
def confidence_image(result: RunResult) -> tuple[np.ndarray, Bounds]:
    """RGBA confidence (max class probability, 0..1) in Web Mercator and its corners."""
    merc = to_web_mercator(result.prediction["confidence"], nodata=np.nan, categorical=False)
    return scalar_rgba(merc.values), latlon_bounds(merc)


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner=False)
def true_colour_image(result: RunResult, step: int | None) -> tuple[np.ndarray, Bounds]:
    """Stretched Sentinel-2 true colour (B04/B03/B02) of one time step (None: season median)."""
    merc = to_web_mercator(true_colour(result.reflectance, step), nodata=np.nan, categorical=False)
    return stretch(merc.values), latlon_bounds(merc)


def display_controls(result: RunResult) -> tuple[float, int | None]:
    """Opacity of the class map and the true-colour image's month."""
    opacity = st.slider("Crop map opacity", 0.0, 1.0, 0.75, step=0.05, key=state.OPACITY)
    steps = [MEDIAN, *[f"{t:%b %Y}" for t in result.axis]]
    picked = st.selectbox("Sentinel-2 true colour", steps, key=state.TRUE_COLOUR_STEP,
                          help="B04/B03/B02, 2-98 % stretch: the season's median or one monthly composite")
    return opacity, None if picked == MEDIAN else steps.index(picked) - 1


def result_map(result: RunResult, *, opacity: float = 0.75, step: int | None = None,
               collapsed: bool = False) -> folium.Map:
    """A map of the run's area with switchable true-colour, crop-map and confidence overlays."""
    geom = result.params.aoi.geometry
    images = [
        ("Sentinel-2 true colour", true_colour_image(result, step), 1.0, True),
        ("Crop map", class_image(result), opacity, True),
        ("Confidence (max probability)", confidence_image(result), 0.85, False),
    ]
    layers = [folium.raster_layers.ImageOverlay(image, bounds=bounds, opacity=alpha, name=name, show=show)
              for name, (image, bounds), alpha, show in images]
    return base_map(geom.bounds, zoom=fit_zoom(geom.bounds, 600), draw=False,
                    layers=[*layers, aoi_layer(mapping(geom))], collapsed=collapsed)


def legend(result: RunResult) -> None:
    """Class colours and names with their share of the mapped area."""
    table = areas(result)
    colors = result.meta.colors
    rows = "".join(
        f'<div style="display:flex;align-items:center;gap:.5em;margin:.15em 0">'
        f'<span style="width:1.1em;height:1.1em;border:1px solid #555;background:{colors[int(r.class_id)]}">'
        f'</span><span>{html.escape(str(r["class"]))}</span>'
        f'<span style="margin-left:auto;color:#666">{r.percent:.1f} %</span></div>'
        for _, r in table.iterrows()
    )
    st.markdown(f"**Legend** ({result.meta.name})", help="Share of the mapped area in each class")
    st.html(f'<div class="cropcore-legend">{rows}</div>')
    st.caption("Confidence layer: dark = uncertain, bright = confident. Transparent: no data.")


def failures(result: RunResult) -> None:
    """Warn about scenes/bands that could not be read (they were left out of the map)."""
    if result.failures:
        listed = "; ".join(f"{f.item_id} {f.asset}: {f.reason}" for f in result.failures[:5])
        more = f" and {len(result.failures) - 5} more" if len(result.failures) > 5 else ""
        st.warning(f"{len(result.failures)} assets could not be read and were left out: {listed}{more}",
                   icon=":material/warning:")


def show_run(shown: RunResult | None, current: RunResult | None) -> None:
    """The last run on the map with its legend and display controls (or how to get one)."""
    if shown is None:
        st.info("Press **Run the crop map**: the demo area takes a few seconds.")
        return
    if shown is not current:
        st.info("The map below is from earlier settings; press **Run the crop map** to update it.")
    failures(shown)
    map_col, side_col = st.columns([5, 2], gap="medium")
    with side_col:
        opacity, step = display_controls(shown)
        legend(shown)
    with map_col:
        show_view_map(result_map(shown, opacity=opacity, step=step), key=state.CROP_MAP)
