"""The season as a time slider: the run's monthly composites (true colour or NDVI) month by month on the map."""

from __future__ import annotations

import warnings

import folium
import numpy as np
import streamlit as st
from shapely.geometry import mapping

from cropcore.legend import DEFAULT_PALETTE
from cropcore.pipeline import RunResult
from cropcore.ui import state
from cropcore.ui.cropmap import CROP_MAP, class_image, legend_entries, true_colour_image
from cropcore.ui.map import aoi_layer, base_map, fit_zoom, image_layer
from cropcore.ui.overlay import Bounds, latlon_bounds, scalar_rgba, to_web_mercator
from cropcore.ui.runs import BY_RUN

TRUE_COLOUR, NDVI = "True colour", "NDVI"
NDVI_CMAP, NDVI_MIN, NDVI_MAX = "RdYlGn", -0.2, 1.0
#: The NDVI legend on the map: the colour at the middle of each range.
NDVI_STOPS = ((-0.2, 0.2, "bare soil, water"), (0.2, 0.4, "sparse"), (0.4, 0.6, "moderate"),
              (0.6, 0.8, "dense"), (0.8, 1.0, "very dense"))


@st.cache_data(hash_funcs=BY_RUN, max_entries=32, show_spinner=False)
def ndvi_image(result: RunResult, step: int) -> tuple[np.ndarray, Bounds]:
    """RGBA NDVI of one monthly composite (red low, green high; no data transparent) in Web Mercator."""
    from cropcore.cube.indices import spectral_index

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels outside the area are NaN
        ndvi = spectral_index(result.reflectance.isel(time=step), "NDVI").compute()
    merc = to_web_mercator(ndvi.astype("float32"), nodata=np.nan, categorical=False)
    return scalar_rgba(merc.values, vmin=NDVI_MIN, vmax=NDVI_MAX, cmap=NDVI_CMAP), latlon_bounds(merc)


def ndvi_legend() -> dict[str, str]:
    """NDVI range -> colour, for leafmap's legend."""
    rgba = scalar_rgba(np.array([[(lo + hi) / 2 for lo, hi, _ in NDVI_STOPS]]), vmin=NDVI_MIN, vmax=NDVI_MAX,
                       cmap=NDVI_CMAP)[0]
    return {f"{lo:.1f} to {hi:.1f} ({what})": "#{:02x}{:02x}{:02x}".format(*px[:3])
            for (lo, hi, what), px in zip(NDVI_STOPS, rgba, strict=True)}


def month_controls(result: RunResult) -> tuple[int, str]:
    """A slider over the season's months (arrow keys move it too) and the image to show: true colour or NDVI."""
    months = [f"{t:%b %Y}" for t in result.axis]
    if st.session_state.get(state.SEASON_MONTH) not in months:  # another run's months
        st.session_state[state.SEASON_MONTH] = months[0]
    month_col, layer_col = st.columns([4, 1], gap="medium")
    with month_col:
        picked = st.select_slider("Month", months, key=state.SEASON_MONTH,
                                  help="The monthly composite shown on the map; the curve marks it")
    with layer_col:
        layer = st.radio("Image", [TRUE_COLOUR, NDVI], key=state.SEASON_LAYER, horizontal=True,
                         help="True colour: B04/B03/B02, 2-98 % stretch. NDVI: (B08 - B04) / (B08 + B04)")
    return months.index(picked), layer


def season_map(result: RunResult, step: int, layer: str, *, palette: str = DEFAULT_PALETTE,
               clicked: tuple[float, float] | None = None) -> folium.Map:
    """The run's area with one month's composite (true colour or NDVI) on, the crop map in the switcher and the
    ``clicked`` (lat, lon) point marked."""
    geom = result.params.aoi.geometry
    month = f"{result.axis[step]:%b %Y}"
    if layer == NDVI:
        composite = image_layer(*ndvi_image(result, step), name=f"NDVI {month}")
        legend, title = ndvi_legend(), f"NDVI {month}"
    else:
        composite = image_layer(*true_colour_image(result, step), name=f"Sentinel-2 true colour {month}")
        legend, title = legend_entries(result, palette), "Crop map"
    crop = image_layer(*class_image(result, palette), name=CROP_MAP, opacity=0.75, show=False)
    layers = [composite, crop, aoi_layer(mapping(geom))]
    if clicked is not None:
        pixel = folium.FeatureGroup(name="Clicked pixel")
        folium.CircleMarker(clicked, radius=7, color="#000000", weight=3, fill=False,
                            tooltip="The pixel of the curve").add_to(pixel)
        layers.append(pixel)
    return base_map(geom.bounds, zoom=fit_zoom(geom.bounds, 380), draw=False, layers=layers, collapsed=True,
                    legend=legend, legend_title=title)
