"""Crop map: classify every pixel of the area over one season and show it on the map."""

import streamlit as st

from cropcore.ui import cropmap, runs, sidebar, state

st.set_page_config(page_title="cropcore · Crop map", layout="wide")
catalog, catalog_ok = sidebar.render()

st.title("Crop map")
model = runs.model_selector()
params, described = runs.run_params(model, catalog)
st.caption(f"Map of {described}. Change the area and dates on the Search page.")
result = runs.run_button(params, ready=catalog_ok) if params is not None else None
cropmap.show_run(state.get_run(), current=result)
sidebar.session_summary()
