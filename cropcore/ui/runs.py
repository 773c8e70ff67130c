"""Crop-map runs: parameters from the session, the pipeline with progress, results cached by parameters."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import asdict
from datetime import date

import streamlit as st
from torch import nn

from cropcore import pipeline
from cropcore.energy import format_energy
from cropcore.errors import CropcoreError, InvalidAOIError
from cropcore.models import ModelMeta, load_checkpoint
from cropcore.models.checkpoint import list_checkpoints
from cropcore.pipeline import RunParams, RunResult
from cropcore.ui import state
from cropcore.ui.search import DEMO_AOI
from cropcore.ui.status import Outcome, with_status

#: The demo season (the embedded catalog's WorldCereal composites, Nov 2020 - Oct 2021).
DEMO_DATES = (date(2020, 11, 1), date(2021, 10, 31))
MAX_RUNS = 8  # results kept in memory (shared by all sessions of this server)
_log = logging.getLogger(__name__)
_STORE_LOCK = threading.Lock()


def params_key(params: RunParams) -> str:
    """A stable text key of everything that determines a run's result."""
    return json.dumps(asdict(params), sort_keys=True, default=str)


def run_key(result: RunResult) -> str:
    """The key of a run's parameters."""
    return params_key(result.params)


#: ``st.cache_data(hash_funcs=BY_RUN)``: functions of a run are cached by the run's parameters.
BY_RUN = {RunResult: run_key}


def run_params(model: str, catalog: str) -> tuple[RunParams | None, str]:
    """The run for the session's search (or AOI), or the demo area and season; and a description of it.

    The session's AOI is parsed here; when it is not usable the reason is shown and no run is offered.
    """
    searched = st.session_state.get(state.SEARCH_PARAMS)
    aoi = state.get_aoi()
    try:
        if searched is not None:
            start, end = searched["datetime"]
            params = RunParams(searched["aoi"], start, end, max_cloud=searched["max_cloud"],
                               catalog=searched["catalog"], model=model)
            where = f"the searched area ({st.session_state.get(state.AOI_SOURCE)})"
        elif aoi is not None:
            params = RunParams(aoi, *DEMO_DATES, catalog=catalog, model=model)
            where = f"the {st.session_state.get(state.AOI_SOURCE)} area"
        else:
            params = RunParams(DEMO_AOI, *DEMO_DATES, catalog=catalog, model=model)
            where = "the demo area (WorldCereal, Belgium)"
    except InvalidAOIError as exc:
        st.error(f"Invalid area of interest: {exc}")
        return None, "no usable area: change it on the Search page"
    return params, f"{where}, season {params.start:%Y-%m-%d} to {params.end:%Y-%m-%d}, catalog {params.catalog}"


@st.cache_resource(show_spinner=False)
def _store() -> OrderedDict[str, RunResult]:
    return OrderedDict()


@st.cache_resource(show_spinner="Loading the model...")
def load_model(name: str) -> tuple[nn.Module, ModelMeta]:
    """A checkpoint (shipped or your own), loaded once per server."""
    return load_checkpoint(name)


@st.cache_data(show_spinner=False)
def dashboard_models() -> dict[str, str]:
    """Shipped and your own checkpoints that classify a monthly season (name -> architecture), shipped ones first;
    others need dated input."""
    models = {}
    for name in list_checkpoints():
        try:
            meta = load_model(name)[1]
        except CropcoreError as exc:  # a damaged file is left out of the list, not a crash of the page
            _log.warning("checkpoint %s left out: %s", name, exc)
            continue
        if meta.time_axis.kind == "season_months":
            models[name] = meta.architecture
    return models


def cached(params: RunParams) -> RunResult | None:
    """The result of an earlier run with the same parameters, or None."""
    store = _store()
    key = params_key(params)
    with _STORE_LOCK:
        if key in store:
            store.move_to_end(key)
            return store[key]
    return None


def execute(params: RunParams) -> RunResult | None:
    """Run the pipeline with a progress bar and one status line per stage; errors are shown, not raised."""
    done = with_status(lambda progress: pipeline.run(params, progress=progress, model=load_model(params.model)),
                       Outcome("Running the crop map...", "The crop map could not be made",
                               "Nothing was kept; try again, and if it persists report it with the server log."))
    if done is None:
        return None
    result, seconds, status = done
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    label = f"Crop map ready in {seconds:.1f} s ({timings}); {format_energy(result.energy)}"
    status.update(label=label, state="complete", expanded=False)
    st.session_state[state.RUN_SUMMARY] = (result, label)
    store = _store()
    with _STORE_LOCK:  # sessions run in threads of one server and share the store
        store[params_key(params)] = result
        while len(store) > MAX_RUNS:
            store.popitem(last=False)
    return result


def min_confidence(result: RunResult) -> float:
    """The minimum confidence chosen in this session for the run's checkpoint (default: the checkpoint's)."""
    chosen = st.session_state.get(state.MIN_CONFIDENCE, {})
    return chosen.get(result.meta.name, result.decision.min_confidence)


def set_min_confidence(result: RunResult, value: float) -> None:
    """Keep the minimum confidence chosen for the run's checkpoint (the Analysis and Export pages use it too)."""
    st.session_state[state.MIN_CONFIDENCE] = {**st.session_state.get(state.MIN_CONFIDENCE, {}), result.meta.name: value}


def shown(result: RunResult | None) -> RunResult | None:
    """The run as the dashboard shows it: pixels below the session's minimum confidence are uncertain (the
    model does not run again; the checkpoint's own threshold gives the run unchanged)."""
    if result is None:
        return None
    value = min_confidence(result)
    return result if value == result.decision.min_confidence else result.with_min_confidence(value)


def model_selector() -> str:
    """The checkpoint to run, shipped or your own (the pipeline's default first)."""
    models = dashboard_models()
    names = sorted(models, key=lambda n: n != pipeline.DEFAULT_MODEL)
    return st.selectbox("Model", names, key=state.MODEL, format_func=lambda n: f"{n} ({models[n]})",
                        help="Shipped and your own checkpoints; the Model page has their model card and metrics")


def run_button(params: RunParams, *, ready: bool) -> RunResult | None:
    """The run button; returns the result for ``params`` (cached ones at once) and keeps it in the session.

    Beneath it, always one element: the run's status box, kept (folded) on later reruns while that run is
    shown, so the page below never shifts: the map stays put and a focused slider keeps the keyboard focus.
    """
    result = cached(params)
    clicked = st.button("Run the crop map", type="primary", disabled=not ready and result is None,
                        help=None if ready else "Needs a reachable catalog (see the sidebar)")
    with st.container():
        made_now = clicked and result is None
        if made_now:
            result = execute(params)
        if result is not None:
            state.set_run(result)
        if not made_now:
            _folded_status(clicked)
    return result


def _folded_status(clicked: bool) -> None:
    """The status box of the run shown, folded: its timings when this session made it, or, when Run found it
    made already on this server, that it was ready at once."""
    shown = state.get_run()
    made, label = st.session_state.get(state.RUN_SUMMARY, (None, ""))
    if clicked and made is not shown:
        made, label = shown, "Crop map ready at once: these settings were run before on this server"
        st.session_state[state.RUN_SUMMARY] = (made, label)
    if made is not None and made is shown:
        st.status(label, state="complete", expanded=False)
