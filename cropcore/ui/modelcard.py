"""Widgets of the Model page: the shipped checkpoints, the model card and the benchmark tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from cropcore import settings
from cropcore.models.checkpoint import CHECKPOINT_DIR
from cropcore.ui.runs import load_model

MODEL_CARD = Path("docs") / "MODEL_CARD.md"
BENCHMARKS = Path("benchmarks") / "README.md"


def checkpoints() -> None:
    """A table of the shipped checkpoints: architecture, bands, time steps, classes, checksum."""
    rows = []
    for path in sorted(CHECKPOINT_DIR.glob("*.pt")):
        meta = load_model(path.stem)[1]
        rows.append({"checkpoint": path.stem, "model": meta.architecture, "bands": ", ".join(meta.bands),
                     "time steps": len(meta.time_axis.steps), "classes": meta.num_classes,
                     "size (MB)": round(path.stat().st_size / 1e6, 1), "sha256": (meta.sha256 or "")[:12]})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def document(relative: Path) -> None:
    """Render a Markdown file of the repository, or say that it is missing."""
    path = settings.PROJECT_ROOT / relative
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        st.warning(f"{relative} is missing from this installation.", icon=":material/description:")
        return
    st.markdown(text)
