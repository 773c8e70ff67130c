"""Widgets of the Model page: the checkpoints (shipped and your own), their calibration (reliability diagram),
the model card and the benchmark tables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from cropcore import pipeline, settings
from cropcore.errors import CropcoreError
from cropcore.models.checkpoint import list_checkpoints
from cropcore.models.meta import ModelMeta
from cropcore.products import plots
from cropcore.ui import state
from cropcore.ui.runs import load_model

MODEL_CARD = Path("docs") / "MODEL_CARD.md"
PATCH_CARD = Path("docs") / "MODEL_CARD_PATCHES.md"
BENCHMARKS = Path("benchmarks") / "README.md"


def calibration_summary(meta: ModelMeta) -> str:
    """The checkpoint's calibration in a few words (the checkpoints table)."""
    c = meta.calibration
    if c is None:
        return "none (temperature 1, no uncertain pixels)"
    precision = f", precision {c.target_precision:.2f}" if c.target_precision is not None else ""
    return (f"temperature {c.temperature:.2f}, uncertain below {c.min_confidence:.2f}{precision}, "
            f"cropland from {c.cropland_threshold:.2f}")


def checkpoints() -> None:
    """A table of the shipped and your own checkpoints: architecture, bands, time steps, classes, calibration,
    checksum."""
    rows = []
    for name, path in list_checkpoints().items():
        try:
            meta = load_model(name)[1]
        except CropcoreError as exc:  # a damaged file is a warning, not a crash of the page
            st.warning(f"Checkpoint {name} cannot be read: {exc}", icon=":material/warning:")
            continue
        rows.append({"checkpoint": name, "model": meta.architecture, "bands": ", ".join(meta.bands),
                     "time steps": len(meta.time_axis.steps), "classes": meta.num_classes,
                     "calibration": calibration_summary(meta),
                     "size (MB)": round(path.stat().st_size / 1e6, 1), "sha256": (meta.sha256 or "")[:12]})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def calibration_text(meta: ModelMeta) -> str:
    """What the checkpoint's calibration does to its maps, in Markdown."""
    c = meta.calibration
    if c is None:
        return ("**Not calibrated.** The probabilities are the network's own (temperature 1), no pixel is "
                "*uncertain* by default (raise the threshold on the Crop map page to see where the model hesitates) "
                "and each pixel takes its most probable class. The cropland layer is the summed probability of the "
                "crop classes, read with the nominal threshold 0.5.")
    fitted = f", fitted on {c.fitted_on}" if c.fitted_on else ""
    precision = ("" if c.target_precision is None else
                 f", chosen on validation data so that the pixels kept reach precision **{c.target_precision:.2f}**")
    return (f"**Temperature {c.temperature:.2f}**{fitted}: the logits are divided by it before the softmax, so the "
            f"confidence matches the accuracy seen on validation data. **Uncertain below {c.min_confidence:.2f}**"
            f"{precision}: such pixels get no class (the Crop map page can move the threshold). **Cropland from "
            f"{c.cropland_threshold:.2f}**: a pixel whose crop classes add up to that probability is cropland and "
            "takes its most probable crop class; any other pixel its most probable non-crop class.")


def reliability(meta: ModelMeta) -> go.Figure | None:
    """The reliability diagram of ``meta.metrics["calibration"]``, or None when the checkpoint has none.

    Raises ``ValueError`` when ``"reliability"`` is there but not ``{"confidence", "accuracy", "count"}`` lists of
    one length, or the values are not numbers.
    """
    entry: Any = meta.metrics.get("calibration")
    if not isinstance(entry, Mapping) or entry.get("reliability") is None:
        return None
    curve = entry["reliability"]
    lists = [curve.get(k) for k in ("confidence", "accuracy", "count")] if isinstance(curve, Mapping) else []
    if len(lists) != 3 or not all(isinstance(v, list) and len(v) == len(lists[0]) for v in lists):
        raise ValueError("metrics['calibration']['reliability'] needs lists 'confidence', 'accuracy' and 'count' of "
                         "one length")
    try:
        return plots.reliability_figure(*lists, ece_raw=_number(entry.get("ece_raw")), ece=_number(entry.get("ece")))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metrics['calibration'] holds values that are not numbers ({exc})") from None


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def calibration() -> None:
    """One checkpoint's calibration: what it does, and its reliability diagram when the checkpoint holds one."""
    names = list(list_checkpoints())
    if not names:
        st.info("No checkpoint is installed.")
        return
    default = names.index(pipeline.DEFAULT_MODEL) if pipeline.DEFAULT_MODEL in names else 0
    name = st.selectbox("Checkpoint", names, index=default, key=state.CALIBRATION_MODEL)
    try:
        meta = load_model(name)[1]
    except CropcoreError as exc:
        st.warning(f"Checkpoint {name} cannot be read: {exc}", icon=":material/warning:")
        return
    st.markdown(calibration_text(meta))
    try:
        figure = reliability(meta)
    except ValueError as exc:
        st.warning(f"The checkpoint's reliability measurements cannot be shown: {exc}", icon=":material/warning:")
        return
    if figure is None:
        st.caption("This checkpoint holds no reliability measurements (metrics['calibration']).")
    else:
        st.plotly_chart(figure, key="reliability_chart")
        st.caption("Each point is a bin of held-out samples by calibrated confidence (size: how many); on the "
                   "dashed diagonal the confidence equals the accuracy. ECE: expected calibration error, before and "
                   "after temperature scaling.")


def document(relative: Path) -> None:
    """Render a Markdown file of the repository, or say that it is missing."""
    path = settings.PROJECT_ROOT / relative
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        st.warning(f"{relative} is missing from this installation.", icon=":material/description:")
        return
    st.markdown(text)
