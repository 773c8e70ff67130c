"""Widgets of the Train page: upload labels, choose the class column and season, fine-tune the default model,
compare it with a RandomForest and the default, and map the current area with it."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import streamlit as st

from cropcore import pipeline
from cropcore.errors import CropcoreError
from cropcore.labels import Labels, label_columns, labels_from_frame, read_frame, season_dates
from cropcore.labels.read import FORMATS
from cropcore.models.checkpoint import list_checkpoints
from cropcore.training.own_labels import (
    DEFAULT_EPOCHS,
    OwnModel,
    comparison,
    default_calls,
    model_name,
    train_on_labels,
)
from cropcore.ui import runs, state
from cropcore.ui.search import DEFAULT_YEAR
from cropcore.ui.status import Outcome, with_status

MAX_UPLOAD_MB = 50


@st.cache_data(max_entries=4, show_spinner="Reading the labels...")
def _frame(data: bytes, name: str) -> gpd.GeoDataFrame:
    with tempfile.TemporaryDirectory(prefix="cropcore-labels-") as tmp:
        path = Path(tmp) / f"labels{Path(name).suffix.lower()}"
        path.write_bytes(data)
        return read_frame(path, name=name)


def upload_labels() -> tuple[gpd.GeoDataFrame, str] | None:
    """The uploaded label file as a GeoDataFrame and its name, or None (errors are shown)."""
    upload = st.file_uploader("Label file: points or polygons (parcels) with a class column",
                              type=[s.lstrip(".") for s in FORMATS], key=state.TRAIN_UPLOAD,
                              max_upload_size=MAX_UPLOAD_MB,
                              help="GeoJSON, GeoPackage or GeoParquet, in any CRS the file declares")
    if upload is None:
        return None
    try:
        return _frame(upload.getvalue(), upload.name), upload.name
    except CropcoreError as exc:
        st.error(str(exc))
        return None


def _guess(columns: list[str]) -> int:
    """Index of the column most likely to hold classes (``class``, ``crop``, ``label`` in its name), else 0."""
    for hint in ("class", "crop", "label"):
        for i, column in enumerate(columns):
            if hint in column.lower():
                return i
    return 0


def choose_labels(frame: gpd.GeoDataFrame, name: str) -> Labels | None:
    """The class column (a select box of the file's columns), the checked labels and their counts per class."""
    columns = label_columns(frame)
    if not columns:
        st.error(f"{name} has no attribute columns, only geometries: add a column with each feature's class")
        return None
    column = st.selectbox("Class column", columns, index=_guess(columns), key=state.TRAIN_COLUMN)
    try:
        labels = labels_from_frame(frame, column, name=name)
    except CropcoreError as exc:
        st.error(str(exc))
        return None
    for warning in labels.warnings:
        st.warning(warning, icon=":material/warning:")
    st.caption(labels.describe())
    counts = pd.DataFrame({"labels": labels.counts()})
    st.dataframe(counts, width="content")
    return labels


def season() -> tuple[int, tuple[date, date]]:
    """The season's last year, and its dates on the default model's time axis."""
    year = int(st.number_input("Season ending in", min_value=2016, max_value=date.today().year, step=1,
                               value=DEFAULT_YEAR, key=state.TRAIN_YEAR))
    dates = season_dates(runs.load_model(pipeline.DEFAULT_MODEL)[1], year)
    st.caption(f"{dates[0]:%b %Y} to {dates[1]:%b %Y}: the default model's monthly season")
    return year, dates


def free_name(labels: Labels, year: int) -> str:
    """A model name from the file, column and season that no checkpoint has yet."""
    base = model_name(None, labels.source, labels.class_column, year)
    taken = set(list_checkpoints())
    return next(n for n in (base, *(f"{base}_{i}" for i in range(2, 1000))) if n not in taken)


def options(labels: Labels, year: int) -> dict[str, Any]:
    """Model name, crop classes and epochs."""
    with st.expander("Options"):
        name = st.text_input("Model name", value=free_name(labels, year),
                             key=f"{state.TRAIN_NAME}.{labels.source}.{year}")
        crops = st.multiselect("Which classes are crops (optional)", labels.class_names, key=state.TRAIN_CROPS,
                               help="Marks them as crops in the legend; leave empty when it does not apply")
        epochs = st.slider("Epochs", 5, 100, DEFAULT_EPOCHS, step=5, key=state.TRAIN_EPOCHS)
    return {"name": name.strip(), "crop_classes": crops or None, "epochs": epochs}


def train_button(labels: Labels, year: int, catalog: str, chosen: dict, *, ready: bool) -> OwnModel | None:
    """The train button; training runs with a progress bar and one status line per stage, errors are shown."""
    if not st.button("Train", type="primary", disabled=not ready,
                     help=None if ready else "Needs a reachable catalog (see the sidebar)"):
        return None
    done = with_status(
        lambda progress: train_on_labels(labels, labels.class_column, year, catalog=catalog, progress=progress,
                                         **chosen),
        Outcome("Training on your labels...", "The model could not be trained",
                "Nothing was saved; report it with the server log."))
    if done is None:
        return None
    result, _, status = done
    status.update(label=f"{result.meta.name} trained in {result.seconds:.0f} s", state="complete", expanded=False)
    runs.dashboard_models.clear()  # the Crop map page lists it from now on
    st.session_state[state.OWN_MODEL] = result
    return result


def show_result(result: OwnModel) -> None:
    """The held-out comparison with the RandomForest, what the default model calls the labels, and warnings."""
    sizes = result.sizes
    st.subheader(f"{result.meta.name}")
    st.caption(f"Fine-tuned from {result.default['name']} on {sizes['train']['parcels']} labels "
               f"({sizes['train']['pixels']} pixels); best epoch chosen on {sizes['val']['parcels']} others; scored "
               f"on {sizes['test']['parcels']} held-out labels ({sizes['test']['pixels']} pixels), split by "
               f"parcel. Saved as {result.path}.")
    for warning in result.warnings:
        st.warning(warning, icon=":material/warning:")
    net, rf = result.network, result.random_forest
    cols = st.columns(3)
    cols[0].metric("Network macro-F1", f"{net['macro_f1']:.3f}", f"{net['macro_f1'] - rf['macro_f1']:+.3f} vs RF")
    cols[1].metric("RandomForest macro-F1", f"{rf['macro_f1']:.3f}")
    own_default = result.default["metrics"].get("network", {})
    if "macro_f1" in own_default:
        cols[2].metric(f"{result.default['name']} macro-F1", f"{own_default['macro_f1']:.3f}",
                       help="The default model on its own held-out WorldCereal points and classes: other data "
                            "and other classes, shown for scale, not as a direct comparison")
    st.markdown("**F1 on the held-out labels** (network and RandomForest trained on the same pixels)")
    st.dataframe(comparison(result).style.format({"network": "{:.3f}", "RandomForest": "{:.3f}"}), width="stretch")
    st.markdown(f"**What the default model {result.default['name']} calls your held-out pixels** (share of each "
                "of your classes)")
    st.dataframe(default_calls(result).style.format("{:.2f}"), width="stretch")


def map_button(result: OwnModel, catalog: str) -> None:
    """Map the session's area (or the demo area) with the new model, then open the Crop map page."""
    params, described = runs.run_params(result.meta.name, catalog)
    if params is None:
        return
    st.caption(f"Next: map {described} with {result.meta.name}. It is also in the model list of the Crop map "
               f"page, and on the command line: `python -m cropcore predict --model {result.meta.name} ...`.")
    if st.button(f"Map the current area with {result.meta.name}", icon=":material/map:"):
        mapped = runs.cached(params) or runs.execute(params)
        if mapped is not None:
            state.set_run(mapped)
            st.session_state[state.MODEL] = result.meta.name
            st.switch_page("pages/2_Crop_map.py")
