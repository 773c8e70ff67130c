"""Export: the crop map, cropland and confidence as Cloud-Optimised GeoTIFFs, class areas, the AOI and the manifest."""

import streamlit as st

from cropcore.ui import downloads, runs, sidebar, state

st.set_page_config(page_title="cropcore · Export", layout="wide")
sidebar.render()

st.title("Export")
result = runs.shown(state.require_run())  # with the minimum confidence chosen on the Crop map page
if result is not None:
    st.caption(f"Model {result.meta.name}, {len(result.search.items)} scenes from {result.search.url}, "
               f"season {result.axis[0]:%b %Y} to {result.axis[-1]:%b %Y}.")
    downloads.buttons(result)
    st.caption(f"Pixels with a confidence below {result.decision.min_confidence:.2f} are *uncertain* (value 254 in "
               "the crop map; change it on the Crop map page). GeoTIFFs open in QGIS or with rasterio; the crop map "
               "carries its colour table and class names, all carry the run manifest in their metadata.")
sidebar.session_summary()
