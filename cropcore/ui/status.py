"""Long work in the dashboard: a status box with a progress bar and one line per stage; errors shown, not raised."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from cropcore.errors import CropcoreError
from cropcore.progress import Progress

T = TypeVar("T")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a status box says: while working, when the work failed, and what was (not) kept after a bug."""

    working: str
    failed: str
    after_bug: str


def with_status(work: Callable[[Progress], T], says: Outcome) -> tuple[T, float, DeltaGenerator] | None:
    """Run ``work(progress)`` in a status box; returns its result, the seconds it took and the box (to label
    it done), or ``None`` after showing the error (a bug's traceback goes to the server log)."""
    status = st.status(says.working, expanded=True)
    bar = status.progress(0.0, text="starting")
    shown: list[str] = []
    t0 = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0), text=message)
        stage = message.split(":")[0]
        if not shown or shown[-1] != stage:
            shown.append(stage)
            status.write(f"{time.perf_counter() - t0:5.1f} s · {message}")

    try:
        result = work(progress)
    except CropcoreError as exc:
        status.update(label=says.failed, state="error", expanded=False)
        st.error(str(exc))
        return None
    except Exception as exc:  # a bug or an unforeseen fault: a short message here, the traceback in the log
        _log.exception("%s", says.failed)
        status.update(label=says.failed, state="error", expanded=False)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        st.error(f"Unexpected error ({type(exc).__name__}: {first}). {says.after_bug}")
        return None
    return result, time.perf_counter() - t0, status
