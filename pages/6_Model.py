"""Model: the checkpoints (shipped and your own), the model card with held-out metrics, calibration, benchmarks."""

import streamlit as st

from cropcore.ui import modelcard, sidebar

st.set_page_config(page_title="cropcore · Model", layout="wide")
sidebar.render()

st.title("Model")
modelcard.checkpoints()
card, patches, calibration, bench = st.tabs(["Model card", "Patch classifiers", "Calibration", "Benchmarks"])
with card:
    modelcard.document(modelcard.MODEL_CARD)
with patches:
    modelcard.document(modelcard.PATCH_CARD)
with calibration:
    modelcard.calibration()
with bench:
    modelcard.document(modelcard.BENCHMARKS)
sidebar.session_summary()
