"""cropcore dashboard: the entry point (``streamlit run app.py``); it only declares the pages."""

import streamlit as st

PAGES = [
    st.Page("pages/0_Home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Search.py", title="Search", icon=":material/search:", url_path="Search"),
    st.Page("pages/2_Crop_map.py", title="Crop map", icon=":material/map:", url_path="Crop_map"),
    st.Page("pages/3_Analysis.py", title="Analysis", icon=":material/monitoring:", url_path="Analysis"),
    st.Page("pages/4_Export.py", title="Export", icon=":material/download:", url_path="Export"),
    st.Page("pages/5_Model.py", title="Model", icon=":material/model_training:", url_path="Model"),
]

st.navigation(PAGES).run()
