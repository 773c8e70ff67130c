"""The crop map on a leafmap map: class, cropland, confidence and true-colour overlays, leafmap's legend and layer
switcher, a swipe view (true colour | crop map), the legend with "uncertain" and shares beside the map, the
minimum-confidence slider, the colour-blind-safe palette toggle and the optional agricultural tiles
(:mod:`cropcore.ui.tiles`)."""

from __future__ import annotations

import html
from collections.abc import Sequence

import folium
import numpy as np
import pandas as pd
import streamlit as st
from shapely.geometry import mapping

from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.legend import DEFAULT_PALETTE, UNCERTAIN_NAME
from cropcore.pipeline import RunResult
from cropcore.products.product import map_colors
from cropcore.products.stats import class_areas
from cropcore.ui import runs, state, tiles
from cropcore.ui.map import LEFT_PANE, RIGHT_PANE, aoi_layer, base_map, fit_zoom, image_layer, show_view_map
from cropcore.ui.overlay import (
    Bounds,
    class_rgba,
    latlon_bounds,
    scalar_rgba,
    stretch,
    to_web_mercator,
    true_colour,
)
from cropcore.ui.palette import palette_toggle
from cropcore.ui.runs import BY_RUN

MEDIAN = "season median"
CROPLAND_CMAP = "YlOrBr"
LAYERS, SWIPE = "Layers", "Swipe: true colour | crop map"
TRUE_COLOUR, CROP_MAP = "Sentinel-2 true colour", "Crop map"


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner=False)
def areas(result: RunResult) -> pd.DataFrame:
    """Hectares and percent per class of a run, uncertain pixels in their own row, the cropland total last."""
    return class_areas(result.prediction["class"], result.meta.class_names, nodata=NODATA,
                       crop_ids=result.meta.crop_ids)


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner=False)
def class_image(result: RunResult, palette: str = DEFAULT_PALETTE) -> tuple[np.ndarray, Bounds]:
    """RGBA class map in ``palette`` (uncertain pixels in their own colour) in Web Mercator and its
    lon/lat corners."""
    merc = to_web_mercator(result.prediction["class"], nodata=NODATA, categorical=True)
    return class_rgba(merc.values, map_colors(result.meta, palette), nodata=NODATA), latlon_bounds(merc)


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner=False)
def confidence_image(result: RunResult) -> tuple[np.ndarray, Bounds]:
    """RGBA confidence (calibrated probability of the mapped class, 0..1) in Web Mercator and its corners."""
    merc = to_web_mercator(result.prediction["confidence"], nodata=np.nan, categorical=False)
    return scalar_rgba(merc.values), latlon_bounds(merc)


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner=False)
def cropland_image(result: RunResult) -> tuple[np.ndarray, Bounds]:
    """RGBA cropland probability (0..1, from the percent layer) in Web Mercator and its corners."""
    percent = result.prediction["cropland"]
    probability = (percent.where(percent != NODATA) / 100).astype("float32")
    merc = to_web_mercator(probability, nodata=np.nan, categorical=False)
    return scalar_rgba(merc.values, cmap=CROPLAND_CMAP), latlon_bounds(merc)


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner=False)
def true_colour_image(result: RunResult, step: int | None) -> tuple[np.ndarray, Bounds]:
    """Stretched Sentinel-2 true colour (B04/B03/B02) of one time step (None: season median)."""
    merc = to_web_mercator(true_colour(result.reflectance, step), nodata=np.nan, categorical=False)
    return stretch(merc.values), latlon_bounds(merc)


def display_controls(result: RunResult) -> tuple[str, float, int | None]:
    """The map view (layers or swipe), the class map's opacity and the true-colour image's month."""
    view = st.radio("Map view", [LAYERS, SWIPE], key=state.MAP_VIEW, horizontal=True,
                    help="Swipe: drag the divider (or focus it and use the arrow keys) to compare the Sentinel-2 "
                         "true colour, left, with the crop map, right")
    opacity = st.slider("Crop map opacity", 0.0, 1.0, 0.75, step=0.05, key=state.OPACITY)
    steps = [MEDIAN, *[f"{t:%b %Y}" for t in result.axis]]
    picked = st.selectbox("Sentinel-2 true colour", steps, key=state.TRUE_COLOUR_STEP,
                          help="B04/B03/B02, 2-98 % stretch: the season's median or one monthly composite")
    return view, opacity, None if picked == MEDIAN else steps.index(picked) - 1


def min_confidence_slider(result: RunResult) -> None:
    """The minimum confidence of the run's checkpoint (default: its calibration); the map follows without
    running the model again."""
    key = f"{state.MIN_CONFIDENCE_SLIDER}.{result.meta.name}"
    if key not in st.session_state:  # first time, or back from another page (widget state is dropped there)
        st.session_state[key] = runs.min_confidence(result)
    decision = result.decision
    default = (f"the checkpoint's calibration gives {decision.min_confidence:.2f}" if decision.calibrated
               else "this checkpoint is not calibrated: 0, no pixel uncertain")
    value = st.slider("Uncertain below confidence", 0.0, 1.0, step=0.01, key=key,
                      help="Pixels whose calibrated confidence is below this are mapped as *uncertain*, apart from "
                           f"every class, in the map, areas, plots and downloads. Default: {default}.")
    runs.set_min_confidence(result, value)


def legend_entries(result: RunResult, palette: str = DEFAULT_PALETTE) -> dict[str, str]:
    """Class name -> colour for leafmap's legend on the map: the model's classes, then "uncertain"."""
    by_id = map_colors(result.meta, palette)
    names = {**dict(enumerate(result.meta.class_names)), UNCERTAIN: UNCERTAIN_NAME}
    return {html.escape(names[i]): colour for i, colour in by_id.items() if i in names}


def result_map(result: RunResult, *, opacity: float = 0.75, step: int | None = None,
               palette: str = DEFAULT_PALETTE, swipe: bool = False,
               extra: Sequence[folium.FeatureGroup] = ()) -> folium.Map:
    """A map of the run's area with switchable true-colour, crop-map, cropland and confidence overlays and
    leafmap's legend; ``swipe`` shows the true colour left of a divider and the crop map right of it; ``extra``
    layers (the agricultural tiles) go on top. The layer switcher is folded into its icon (hover, or Enter on it,
    opens it), so it does not hide the map."""
    geom = result.params.aoi.geometry
    left, right = (LEFT_PANE, RIGHT_PANE) if swipe else (None, None)
    layers = [image_layer(*true_colour_image(result, step), name=TRUE_COLOUR, pane=left),
              image_layer(*class_image(result, palette), name=CROP_MAP, opacity=opacity, pane=right)]
    if not swipe:
        if "cropland" in result.prediction:
            layers.append(image_layer(*cropland_image(result), name="Cropland (probability)", opacity=0.85,
                                      show=False))
        layers.append(image_layer(*confidence_image(result), name="Confidence (probability of the class)",
                                  opacity=0.85, show=False))
    return base_map(geom.bounds, zoom=fit_zoom(geom.bounds, 600), draw=False,
                    layers=[*layers, aoi_layer(mapping(geom)), *extra], collapsed=True,
                    legend=legend_entries(result, palette), legend_title="Crop map",
                    swipe=(layers[0], layers[1]) if swipe else None)


def _legend_row(colour: str, name: str, percent: float, *, italic: bool = False) -> str:
    label = f"<i>{html.escape(name)}</i>" if italic else html.escape(name)
    return (f'<div style="display:flex;align-items:center;gap:.5em;margin:.15em 0">'
            f'<span style="width:1.1em;height:1.1em;border:1px solid #555;background:{colour}"></span>'
            f'<span>{label}</span><span style="margin-left:auto;color:#666;white-space:nowrap">{percent:.1f} %</span>'
            '</div>')


def legend(result: RunResult, palette: str = DEFAULT_PALETTE) -> None:
    """Class colours and names with their share of the mapped area, "uncertain" apart, the cropland total."""
    table = areas(result)
    colors = map_colors(result.meta, palette)
    rows = [_legend_row(colors[int(r.class_id)], str(r["class"]), r.percent, italic=r.kind == "uncertain")
            for _, r in table[table["kind"] != "total"].iterrows()]
    st.markdown(f"**Legend** ({result.meta.name})", help="Share of the mapped area in each class")
    st.html(f'<div class="cropcore-legend">{"".join(rows)}</div>')
    total = table[table["kind"] == "total"]
    threshold = result.decision.min_confidence
    notes = [f"*Uncertain*: confidence below {threshold:.2f}, in no class." if threshold > 0
             else "*Uncertain*: none (raise the threshold to see where the model hesitates)."]
    if len(total):
        notes.append(f"Cropland (the crop classes, uncertain pixels not included): {total.percent.iloc[0]:.1f} %.")
    notes.append("Cropland layer: probability of any crop class (pale yellow = low, dark brown = high). Confidence "
                 "layer: dark = low, bright = high. Transparent: no data.")
    st.caption(" ".join(notes))


def failures(result: RunResult) -> None:
    """Warn about scenes/bands that could not be read (they were left out of the map)."""
    if result.failures:
        listed = "; ".join(f"{f.item_id} {f.asset}: {f.reason}" for f in result.failures[:5])
        more = f" and {len(result.failures) - 5} more" if len(result.failures) > 5 else ""
        st.warning(f"{len(result.failures)} assets could not be read and were left out: {listed}{more}",
                   icon=":material/warning:")


def show_run(last: RunResult | None, current: RunResult | None) -> None:
    """The last run on the map with its legend and display controls (or how to get one)."""
    if last is None:
        st.info("Press **Run the crop map**: the demo area takes a few seconds.")
        return
    if last is not current:
        st.info("The map below is from earlier settings; press **Run the crop map** to update it.")
    failures(last)
    map_col, side_col = st.columns([5, 2], gap="medium")
    with side_col:
        view, opacity, step = display_controls(last)
        min_confidence_slider(last)
        palette = palette_toggle()
        with_tiles = tiles.toggle()
        result = runs.shown(last)
        legend(result, palette)
    scores = tiles.scores_or_warning(last) if with_tiles else None
    extra = [tiles.tiles_layer(scores)] if scores is not None else []
    with map_col:
        show_view_map(result_map(result, opacity=opacity, step=step, palette=palette, swipe=view == SWIPE,
                                 extra=extra), key=state.CROP_MAP)
    if scores is not None:
        tiles.table(scores)
