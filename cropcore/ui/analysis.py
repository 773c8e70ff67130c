"""Widgets of the Analysis page: area per class, NDVI phenology per class, a clicked pixel's curve."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cropcore.inference.options import NODATA
from cropcore.pipeline import RunResult
from cropcore.products import plots
from cropcore.products.stats import phenology
from cropcore.ui import state
from cropcore.ui.cropmap import areas, result_map
from cropcore.ui.map import show_view_map
from cropcore.ui.overlay import pixel_ndvi, xy_at
from cropcore.ui.runs import BY_RUN


@st.cache_data(hash_funcs=BY_RUN, max_entries=16, show_spinner="Computing NDVI per class...")
def class_phenology(result: RunResult) -> pd.DataFrame:
    """NDVI median and IQR per class over the model's time axis."""
    return phenology(result.reflectance, result.prediction["class"], result.meta.class_names, nodata=NODATA)


def area_section(result: RunResult) -> None:
    """Bar chart and table of hectares and percent per class."""
    table = areas(result)
    st.plotly_chart(plots.area_bar(table, result.meta.colors), key="area_chart")
    st.dataframe(table.drop(columns="class_id"), hide_index=True, width="stretch", column_config={
        "hectares": st.column_config.NumberColumn("hectares", format="%.2f"),
        "percent": st.column_config.NumberColumn("% of mapped area", format="%.1f"),
    })


def phenology_section(result: RunResult) -> None:
    """NDVI median and inter-quartile band per class, and the medians as a class x month table."""
    pheno = class_phenology(result)
    st.plotly_chart(plots.phenology_figure(pheno, result.meta.colors), key="phenology_chart")
    with st.expander("NDVI medians per class and month"):
        table = pheno.assign(month=pheno["time"].dt.strftime("%Y-%m")).pivot(
            index="class", columns="month", values="median")
        st.dataframe(table.round(3), width="stretch")


def pixel_section(result: RunResult) -> None:
    """A map to click on, and the NDVI curve of the clicked pixel beside its class median."""
    map_col, curve_col = st.columns([2, 3], gap="medium")
    with map_col:
        clicked = show_view_map(result_map(result, collapsed=True), key=state.ANALYSIS_MAP, height=420, clicks=True)
    with curve_col:
        classes = result.prediction["class"]
        xy = xy_at(classes, *clicked) if clicked else None
        if xy is None:
            st.info("Click a pixel inside the mapped area to see its NDVI curve." if clicked is None
                    else "That point is outside the mapped area; click inside it.")
            return
        class_id = int(classes.sel(x=xy[0], y=xy[1]))
        label = "no data" if class_id == NODATA else result.meta.class_names[class_id]
        pheno = class_phenology(result)
        figure = plots.pixel_ndvi_figure(
            result.axis, pixel_ndvi(result.reflectance, *xy), label=label,
            color=result.meta.colors.get(class_id, "#1565c0"), reference=pheno[pheno["class_id"] == class_id])
        st.plotly_chart(figure, key="pixel_chart")
        st.caption(f"Pixel at {clicked[0]:.5f} N, {clicked[1]:.5f} E (x {xy[0]:.0f}, y {xy[1]:.0f}, "
                   f"{result.prediction['class'].rio.crs}); confidence "
                   f"{float(result.prediction['confidence'].sel(x=xy[0], y=xy[1])):.2f}")
