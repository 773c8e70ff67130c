"""Analysis: area per class, NDVI phenology per class, the season month by month and the NDVI curve of a clicked
pixel (uncertain apart)."""

import streamlit as st

from cropcore.ui import analysis, runs, sidebar, state
from cropcore.ui.palette import palette_toggle

st.set_page_config(page_title="cropcore · Analysis", layout="wide")
sidebar.render()

st.title("Analysis")
result = runs.shown(state.require_run())  # with the minimum confidence chosen on the Crop map page
if result is not None:
    palette = palette_toggle()
    area_col, pheno_col = st.columns(2, gap="large")
    with area_col:
        analysis.area_section(result, palette)
    with pheno_col:
        analysis.phenology_section(result, palette)
    st.subheader("The season month by month, and one pixel")
    analysis.pixel_section(result, palette)
sidebar.session_summary()
