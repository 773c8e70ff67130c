"""Search: draw or upload an area, pick the season and cloud limit, find Sentinel-2 scenes."""

import streamlit as st

from cropcore.ui import search, sidebar, state

st.set_page_config(page_title="cropcore · Search", layout="wide")
catalog, catalog_ok = sidebar.render()

st.title("Search Sentinel-2 scenes")
map_col, form_col = st.columns([3, 2], gap="large")
with form_col:
    st.subheader("Area of interest")
    search.take_upload(search.upload_aoi())
    search.use_demo_area()
    aoi_status = st.container()
    st.subheader("Dates and clouds")
    dates = search.date_range()
    cloud = search.max_cloud()
    action = st.container()
with map_col:
    search.take_drawing(search.search_map())
with aoi_status:
    aoi_ok = search.check_aoi(state.get_aoi())
with action:
    search.search_button(dates, cloud, catalog, ready=aoi_ok and catalog_ok)

search.results()
sidebar.session_summary()
