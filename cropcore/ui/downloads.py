"""Widgets of the Export page: the run's product as download buttons (built in memory, once per run)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from cropcore.legend import DEFAULT_PALETTE
from cropcore.pipeline import RunResult
from cropcore.products.product import product_bytes, product_files
from cropcore.ui.palette import current_palette
from cropcore.ui.runs import BY_RUN


@dataclass(frozen=True)
class Download:
    """One file to download."""

    label: str
    data: bytes
    file_name: str
    mime: str
    help: str


@st.cache_data(hash_funcs=BY_RUN, max_entries=8, show_spinner="Writing the files...")
def downloads(result: RunResult, name: str = "cropmap", palette: str = DEFAULT_PALETTE) -> list[Download]:
    """The files of the product (:mod:`cropcore.products.product`), the same the predict CLI writes; ``palette``
    colours the crop map's colour table."""
    data = product_bytes(result.prediction, result.meta, manifest=result.manifest(), aoi=result.params.aoi,
                         palette=palette)
    return [Download(f.label, data[f.key], f.file_name(name), f.mime, f.help) for f in product_files(result.prediction)]


def file_size(n: int) -> str:
    """A byte count for people: ``812 B``, ``6.1 kB``, ``2.3 MB``."""
    if n < 1000:
        return f"{n} B"
    return f"{n / 1e3:,.1f} kB" if n < 1e6 else f"{n / 1e6:,.1f} MB"


def buttons(result: RunResult) -> None:
    """One download button per file, with its size."""
    for item in downloads(result, palette=current_palette()):
        st.download_button(f"{item.label} · {file_size(len(item.data))}", item.data, file_name=item.file_name,
                           mime=item.mime, help=item.help, on_click="ignore", icon=":material/download:")
