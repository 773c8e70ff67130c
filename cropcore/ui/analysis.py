"""Widgets of the Analysis page: area per class, NDVI phenology per class, the season month by month on the map
with a clicked pixel's curve (uncertain pixels apart from every class), in the session's palette."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.legend import DEFAULT_PALETTE
from cropcore.pipeline import RunResult
from cropcore.products import plots
from cropcore.products.product import map_colors
from cropcore.products.stats import phenology
from cropcore.ui import state
from cropcore.ui.cropmap import areas
from cropcore.ui.map import show_view_map
from cropcore.ui.overlay import pixel_ndvi, xy_at
from cropcore.ui.runs import BY_RUN
from cropcore.ui.season import month_controls, season_map


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner="Computing NDVI per class...")
def class_phenology(result: RunResult) -> pd.DataFrame:
    """NDVI median and IQR per class (and of the uncertain pixels) over the model's time axis."""
    return phenology(result.reflectance, result.prediction["class"], result.meta.class_names, nodata=NODATA)


def area_section(result: RunResult, palette: str = DEFAULT_PALETTE) -> None:
    """Bar chart and table of hectares and percent per class and of the uncertain pixels; the cropland total."""
    table = areas(result)
    st.plotly_chart(plots.area_bar(table, map_colors(result.meta, palette)), key="area_chart")
    rows = table[table["kind"] != "total"]
    st.dataframe(rows.drop(columns="class_id"), hide_index=True, width="stretch", column_config={
        "hectares": st.column_config.NumberColumn("hectares", format="%.2f"),
        "percent": st.column_config.NumberColumn("% of mapped area", format="%.1f"),
    })
    total = table[table["kind"] == "total"]
    uncertain = rows[rows["kind"] == "uncertain"].iloc[0]
    text = (f"Uncertain (confidence below {result.decision.min_confidence:.2f}, set on the Crop map page): "
            f"{uncertain.hectares:,.2f} ha, {uncertain.percent:.1f} %.")
    if len(total):
        text += (f" Cropland, the crop classes without the uncertain pixels: {total.hectares.iloc[0]:,.2f} ha, "
                 f"{total.percent.iloc[0]:.1f} %.")
    st.caption(text)


def phenology_section(result: RunResult, palette: str = DEFAULT_PALETTE) -> None:
    """NDVI median and inter-quartile band per class, and the medians as a class x month table."""
    pheno = class_phenology(result)
    st.plotly_chart(plots.phenology_figure(pheno, map_colors(result.meta, palette)), key="phenology_chart")
    with st.expander("NDVI medians per class and month"):
        table = pheno.assign(month=pheno["time"].dt.strftime("%Y-%m")).pivot(
            index="class", columns="month", values="median")
        st.dataframe(table.round(3), width="stretch")


def pixel_section(result: RunResult, palette: str = DEFAULT_PALETTE) -> None:
    """The season month by month on a map to click on (a month slider, true colour or NDVI), and the NDVI curve
    of the clicked pixel beside its class median, the month on the map marked."""
    step, layer = month_controls(result)
    map_col, curve_col = st.columns([1, 1], gap="medium")
    with map_col:
        clicked = show_view_map(season_map(result, step, layer, palette=palette,
                                           clicked=st.session_state.get(state.CLICKED)),
                                key=state.ANALYSIS_MAP, height=460, clicks=True)
    if clicked is not None and clicked != st.session_state.get(state.CLICKED):
        st.session_state[state.CLICKED] = clicked
        st.rerun()  # to mark it on the map
    clicked = st.session_state.get(state.CLICKED)  # a new month re-draws the map; the pixel stays
    with curve_col:
        classes = result.prediction["class"]
        xy = xy_at(classes, *clicked) if clicked else None
        if xy is None:
            st.info("Click a pixel inside the mapped area to see its NDVI curve." if clicked is None
                    else "That point is outside the mapped area; click inside it.")
            return
        pixel = result.prediction.sel(x=xy[0], y=xy[1])
        class_id = int(pixel["class"])
        label = pixel_label(result, class_id, int(pixel["class_raw"]))
        pheno = class_phenology(result)
        figure = plots.pixel_ndvi_figure(
            result.axis, pixel_ndvi(result.reflectance, *xy), label=label,
            color=map_colors(result.meta, palette).get(class_id, "#1565c0"),
            reference=pheno[pheno["class_id"] == class_id], month=result.axis[step])
        st.plotly_chart(figure, key="pixel_chart")
        cropland = int(pixel["cropland"]) if "cropland" in pixel else NODATA
        st.caption(f"Pixel at {clicked[0]:.5f} N, {clicked[1]:.5f} E (x {xy[0]:.0f}, y {xy[1]:.0f}, "
                   f"{classes.rio.crs}); confidence {float(pixel['confidence']):.2f}"
                   + (f", cropland probability {cropland} %" if cropland != NODATA else ""))


def pixel_label(result: RunResult, class_id: int, raw: int) -> str:
    """A pixel's class for people: its name, "uncertain (most likely ...)" or "no data"."""
    if class_id == NODATA:
        return "no data"
    if class_id == UNCERTAIN:
        return f"uncertain (most likely {result.meta.class_names[raw]})"
    return result.meta.class_names[class_id]
