"""Train: fine-tune the default model on your own labels, compare it, and map with it."""

import streamlit as st

from cropcore.ui import sidebar, state
from cropcore.ui import train as ui_train

st.set_page_config(page_title="cropcore · Train", layout="wide")
catalog, catalog_ok = sidebar.render()

st.title("Train on your labels")
st.markdown(
    "Upload your field survey or parcel register: points or polygons with a class column. Each labelled pixel's "
    "monthly Sentinel-2 series is read from the catalog for the season, the default model is fine-tuned on your "
    "classes, and it is scored with a RandomForest on labels held out polygon by polygon."
)
uploaded = ui_train.upload_labels()
labels = ui_train.choose_labels(*uploaded) if uploaded else None
if labels is not None:
    year, _ = ui_train.season()
    chosen = ui_train.options(labels, year)
    ui_train.train_button(labels, year, catalog, chosen, ready=catalog_ok)
result = st.session_state.get(state.OWN_MODEL)
if result is not None:
    ui_train.show_result(result)
    ui_train.map_button(result, catalog)
sidebar.session_summary()
