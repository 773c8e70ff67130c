"""Export: the crop map and confidence as Cloud-Optimised GeoTIFFs, class areas, the AOI and the manifest."""

import streamlit as st

from cropcore.ui import downloads, sidebar, state

st.set_page_config(page_title="cropcore · Export", layout="wide")
sidebar.render()

st.title("Export")
result = state.require_run()
if result is not None:
    st.caption(f"Model {result.meta.name}, {len(result.search.items)} scenes from {result.search.url}, "
               f"season {result.axis[0]:%b %Y} to {result.axis[-1]:%b %Y}.")
    downloads.buttons(result)
    st.caption("GeoTIFFs open in QGIS or with rasterio; the crop map carries its colour table and class names, "
               "both carry the run manifest in their metadata.")
sidebar.session_summary()
