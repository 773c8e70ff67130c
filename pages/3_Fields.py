"""Fields: per-parcel statistics of an uploaded parcel file, the map as field polygons, both as downloads."""

import streamlit as st

from cropcore.ui import fields, runs, sidebar, state

st.set_page_config(page_title="cropcore · Fields", layout="wide")
sidebar.render()

st.title("Fields")
result = runs.shown(state.require_run())  # with the minimum confidence chosen on the Crop map page
if result is not None:
    fields.page(result)
sidebar.session_summary()
