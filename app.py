"""cropcore dashboard: the landing page (no logic; the pages call cropcore)."""

import streamlit as st

from cropcore.ui import sidebar

st.set_page_config(page_title="cropcore", layout="wide")
sidebar.render()

st.title("cropcore")
st.markdown(
    "Crop-type maps from **Sentinel-2 time series**: draw a field or a region, find the scenes that cover "
    "it in a STAC catalog, and turn a season of images into a map of crops with areas and NDVI curves. "
    "Everything runs on this machine; the embedded catalog holds real sample scenes, so the demo works "
    "without internet."
)
st.subheader("How it works")
st.markdown(
    "1. **Search**: draw or upload an area of interest, pick a season and a cloud limit, list the scenes.\n"
    "2. **Load and preprocess**: the scenes become a lazy datacube; clouds are masked, composites and NDVI "
    "computed.\n"
    "3. **Crop map**: a temporal deep-learning model classifies every pixel.\n"
    "4. **Analyse and export**: areas per crop, NDVI phenology, Cloud-Optimised GeoTIFFs."
)
st.subheader("Embedded catalog")
sidebar.embedded_status()
st.page_link("pages/1_Search.py", label="Start: search scenes", icon=":material/search:")
st.page_link("pages/2_Crop_map.py", label="Or map the demo area right away", icon=":material/map:")
st.caption("New here? Open Search, press *Use the demo area* (or draw over the dashed green box) "
           "and *Search scenes*: the demo season 2020/21 lists the WorldCereal monthly scenes. "
           "Or open Crop map and press *Run the crop map*: without a search it maps the demo area.")
sidebar.session_summary()
