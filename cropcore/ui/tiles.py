"""The "Agricultural tiles" layer of the Crop map page: the run's AOI cut into 1.2 km tiles scored by the patch
classifiers (:mod:`cropcore.patches.tiles`), as a GeoJSON layer with tooltips and a table beneath the map."""

from __future__ import annotations

import folium
import streamlit as st
from branca.colormap import LinearColormap

from cropcore.errors import CropcoreError
from cropcore.patches.tiles import GATE_MODEL, LABEL_MODEL, TileScores, score_aoi
from cropcore.pipeline import RunResult
from cropcore.ui.runs import BY_RUN

LAYER = "Agricultural tiles (probability)"
#: Session key of the layer's toggle.
TOGGLE = "widget.agri_tiles"
#: Low agricultural probability: blue-grey; high: green.
COLOURS = LinearColormap(["#607d8b", "#fff59d", "#2e7d32"], vmin=0.0, vmax=1.0)
CAPTION = (f"Tiles of 120 x 120 px (1.2 km), scored on the median of the June-August scenes by `{GATE_MODEL}` "
           f"(probability of agriculture) and `{LABEL_MODEL}` (19 BigEarthNet labels). **These models are trained on "
           "only 124 BigEarthNet patches from a few European places**: read the scores as a rough hint, not a map "
           "(Model page, *Patch classifiers* tab; docs/MODEL_CARD_PATCHES.md, section *Gate*).")


@st.cache_data(hash_funcs=BY_RUN, max_entries=8, show_spinner=False)
def tile_scores(result: RunResult) -> TileScores:
    """The tiles of the run's AOI scored from the scenes of its date range (cached by the run's parameters)."""
    p = result.params
    return score_aoi(p.aoi, p.start, p.end, catalog=p.catalog, max_cloud=p.max_cloud, collections=p.collections,
                     resolution=p.resolution)


def tiles_layer(scores: TileScores) -> folium.FeatureGroup:
    """The tiles outlined and filled by their probability of agriculture, with the top labels as tooltip."""
    group = folium.FeatureGroup(name=LAYER)
    folium.GeoJson(
        scores.geojson(),
        style_function=lambda f: {"color": "#263238", "weight": 1.5, "fillOpacity": 0.3,
                                  "fillColor": COLOURS(f["properties"]["agri"])},
        tooltip=folium.GeoJsonTooltip(["tile", "agri", "top_labels"],
                                      aliases=["tile", "agricultural (probability)", "top BigEarthNet labels"],
                                      style="white-space: normal; width: 21em",  # the labels wrap
                                      direction="top"),  # centred above the pointer: "right" ran off the map
    ).add_to(group)
    return group


def toggle() -> bool:
    """Whether the session wants the agricultural tiles (off by default: scoring loads the scenes again)."""
    return st.toggle("Agricultural tiles (1.2 km)", key=TOGGLE,
                     help="Score the area's 1.2 km tiles with the patch classifiers: a layer on the map and a table "
                          "below it")


def scores_or_warning(result: RunResult) -> TileScores | None:
    """The run's tile scores, or ``None`` after a warning saying why they cannot be made (never a traceback)."""
    try:
        with st.spinner("Scoring 1.2 km tiles with the patch classifiers..."):
            return tile_scores(result)
    except CropcoreError as exc:
        st.warning(f"No agricultural tiles for this area: {exc}", icon=":material/warning:")
        return None


def table(scores: TileScores) -> None:
    """The tiles with their probability of agriculture and top labels, and what the scores are."""
    st.markdown("**Agricultural tiles**")
    notes = []
    if len(scores.tiles) == 1 and scores.padded:
        notes.append(f"The area ({scores.shape[0]} x {scores.shape[1]} px) is smaller than one tile: it is scored "
                     "as one tile padded to 120 px by mirroring its pixels.")
    elif scores.padded:
        notes.append("Tiles at the right and bottom edges are smaller than 120 px and padded by mirroring.")
    if scores.filled:
        filled = ", ".join(f"{band} from {source}" for band, source in scores.filled.items())
        notes.append(f"The scenes lack some bands the classifiers take; copied from the nearest band: {filled}.")
    st.dataframe(scores.table(), hide_index=True, width="stretch")
    st.caption(" ".join([*notes, CAPTION]))
