"""Model: the shipped checkpoints, the model card with held-out metrics, and the benchmarks."""

import streamlit as st

from cropcore.ui import modelcard, sidebar

st.set_page_config(page_title="cropcore · Model", layout="wide")
sidebar.render()

st.title("Model")
modelcard.checkpoints()
card, bench = st.tabs(["Model card", "Benchmarks"])
with card:
    modelcard.document(modelcard.MODEL_CARD)
with bench:
    modelcard.document(modelcard.BENCHMARKS)
sidebar.session_summary()
