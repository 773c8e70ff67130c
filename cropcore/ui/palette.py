"""The class palette of the session: the legend's own colours or a colour-blind-safe set (Okabe-Ito), chosen with
a toggle and applied to the map, its legend and the plots of every page."""

from __future__ import annotations

import streamlit as st

from cropcore.legend import CVD_PALETTE, DEFAULT_PALETTE
from cropcore.ui import state


def current_palette() -> str:
    """The palette chosen in this session (the default until the toggle is switched on)."""
    return st.session_state.get(state.PALETTE, DEFAULT_PALETTE)


def _keep() -> None:
    st.session_state[state.PALETTE] = CVD_PALETTE if st.session_state[state.PALETTE_TOGGLE] else DEFAULT_PALETTE


def palette_toggle() -> str:
    """The "Colour-blind safe" toggle (it keeps its value across pages); returns the palette."""
    st.session_state[state.PALETTE_TOGGLE] = current_palette() == CVD_PALETTE  # widget state is dropped on other pages
    st.toggle("Colour-blind safe", key=state.PALETTE_TOGGLE, on_change=_keep,
              help="Okabe-Ito colours for the classes, told apart with any colour vision, on the map, the legend "
                   "and the plots")
    return current_palette()
