"""Progress reporting: one callback type used by every long-running step.

A :data:`Progress` callback takes the fraction done (0..1) and a short message. Library functions take one as
``progress=`` and report through it; the CLI draws a tqdm bar and the dashboard a Streamlit progress bar.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]


def silent(fraction: float, message: str) -> None:
    """A :data:`Progress` that reports nothing."""


def span(progress: Progress | None, start: float, end: float, prefix: str = "") -> Progress:
    """A callback mapping a step's own 0..1 onto ``start..end`` of ``progress``, its messages prefixed."""
    outer = progress or silent

    def report(fraction: float, message: str) -> None:
        outer(round(start + (end - start) * fraction, 6), f"{prefix}{message}")

    return report
