"""The dashboard's Leaflet maps, built with leafmap's folium backend: offline assets, no basemap by default, a
draw tool, footprints, leafmap's legend, a swipe (side-by-side) view.

``leafmap`` is imported on the first map, not with this module: it pulls in ipyleaflet, ipyvuetify and plotly
express, about 2 s on a loaded machine, which pages without a map should not pay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import folium
import folium.plugins
import streamlit as st
from branca.element import Element, MacroElement
from jinja2 import Template
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit_folium import st_folium

from cropcore.ui.assets import localize

#: The WorldCereal demo patch in Belgium (west, south, east, north).
DEMO_BBOX = (5.3189, 50.6286, 5.3334, 50.6378)

#: Custom panes of the swipe view: above the tiles (200), below the outlines in Leaflet's overlay pane (400).
LEFT_PANE, RIGHT_PANE = "swipe-left", "swipe-right"
OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = "&copy; OpenStreetMap contributors"
# Leaflet shows grey where no tile loads; a pale paper tone reads as "no basemap" rather than "broken".
_BACKGROUND = "<style>.leaflet-container { background: #f3f1ea; }</style>"
# leafmap's legend at a readable size and wrapping inside its box (its own style, later in the page, floats the
# list out of the box; a more specific selector wins).
_LEGEND_STYLE = ("<style>.leaflet-control .maplegend { background: rgba(255, 255, 255, 0.92); } "
                 ".leaflet-control .maplegend .legend-scale ul { float: none; margin: 0; } "
                 ".leaflet-control .maplegend .legend-scale ul li { font-size: 100%; line-height: 1.3; "
                 "display: flex; align-items: center; gap: .4em; } "
                 ".leaflet-control .maplegend ul.legend-labels li span { float: none; flex: none; height: 1em; "
                 "width: 1.6em; margin: 0; }</style>")


def static_dir() -> Path:
    """The app's static folder: ``static/`` beside the main script (what Streamlit serves)."""
    ctx = get_script_run_ctx()
    root = Path(ctx.main_script_path).parent if ctx and ctx.main_script_path else Path.cwd()
    return root / "static"


def static_base_url() -> str:
    """URL path under which Streamlit serves the static folder, honouring ``server.baseUrlPath``."""
    prefix = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{prefix}/app/static/" if prefix else "/app/static/"


def bbox_center(bbox: Sequence[float]) -> tuple[float, float]:
    """(lat, lon) centre of a (west, south, east, north) box."""
    west, south, east, north = bbox
    return (south + north) / 2, (west + east) / 2


def fit_zoom(bbox: Sequence[float], pixels: int = 400) -> int:
    """The Web-Mercator zoom at which ``bbox`` spans about ``pixels`` (clamped to 2..17)."""
    west, south, east, north = bbox
    span = max(east - west, (north - south) * 1.5, 1e-6)  # latitude degrees are longer near the equator
    return max(2, min(17, int(math.log2(pixels * 360 / (256 * span)))))


def base_map(bbox: Sequence[float] = DEMO_BBOX, *, zoom: int = 15, draw: bool = True,
             layers: Sequence[folium.map.Layer] = (), collapsed: bool = False,
             legend: Mapping[str, str] | None = None, legend_title: str = "Legend",
             swipe: tuple[folium.map.Layer, folium.map.Layer] | None = None) -> folium.Map:
    """A leafmap map centred on ``bbox``: no basemap, OpenStreetMap as an opt-in online layer, the demo outline.

    ``layers`` go into the layer switcher (it must come after them: its script refers to them by name);
    ``collapsed`` folds the switcher into an icon (small maps); ``legend`` (name -> colour) adds leafmap's
    legend in the bottom-right corner. ``swipe`` (left, right), two of ``layers`` made by :func:`image_layer`
    with ``pane`` :data:`LEFT_PANE` and :data:`RIGHT_PANE`, adds a divider (folium's SideBySideLayers, dragged
    or moved with the arrow keys) showing the left layer left of it and the right one right of it.
    """
    from leafmap.foliumap import Map

    m = Map(location=bbox_center(bbox), zoom_start=zoom, tiles=None, scale_control=True, draw_control=False,
            fullscreen_control=False, layers_control=False, height=None, width=None)
    m.get_root().header.add_child(Element(_BACKGROUND))
    folium.TileLayer(OSM_URL, attr=OSM_ATTRIBUTION, name="OpenStreetMap (online)", overlay=True,
                     show=False, max_zoom=19).add_to(m)
    west, south, east, north = DEMO_BBOX
    demo = folium.FeatureGroup(name="Demo area (WorldCereal, Belgium)")
    folium.Rectangle([(south, west), (north, east)], color="#2e7d32", weight=2, dash_array="6 4",
                     fill=False, tooltip="Demo area: draw over it to find the demo scenes").add_to(demo)
    demo.add_to(m)
    if draw:
        shape = {"shapeOptions": {"color": "#d84315"}}
        folium.plugins.Draw(
            draw_options={"polyline": False, "circle": False, "marker": False, "circlemarker": False,
                          "rectangle": shape, "polygon": {**shape, "allowIntersection": False}},
            edit_options={"edit": False},
        ).add_to(m)
    if swipe:
        folium.map.CustomPane(LEFT_PANE, z_index=350).add_to(m)
        folium.map.CustomPane(RIGHT_PANE, z_index=351).add_to(m)
        _PaneContainers().add_to(m)
    for layer in layers:
        layer.add_to(m)
    if swipe:
        folium.plugins.SideBySideLayers(*swipe).add_to(m)
    folium.LayerControl(collapsed=collapsed).add_to(m)
    if legend:
        # Not draggable: leafmap's draggable legend loads jQuery UI from a CDN.
        m.add_legend(title=legend_title, legend_dict=dict(legend), draggable=False, position="bottomright",
                     style={"position": "static", "font-size": "15px", "max-width": "16em"})
        m.get_root().header.add_child(Element(_LEGEND_STYLE))
    return m


def image_layer(image: Any, bounds: Sequence[Sequence[float]], *, name: str, opacity: float = 1.0,
                show: bool = True, pane: str | None = None) -> folium.raster_layers.ImageOverlay:
    """An RGBA image overlay, optionally in a custom ``pane`` (:data:`LEFT_PANE`, :data:`RIGHT_PANE`: the swipe
    view of :func:`base_map` clips those)."""
    options = {"pane": pane} if pane else {}
    return folium.raster_layers.ImageOverlay(image, bounds=bounds, opacity=opacity, name=name, show=show,
                                             **options)


class _PaneContainers(MacroElement):
    """Lets leaflet-side-by-side clip image overlays: their "container" is the pane they are drawn in."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        L.ImageOverlay.include({getContainer: function () { return this.getPane(); }});
        {% endmacro %}
    """)


def footprints_layer(items: Iterable[Mapping[str, Any]], name: str = "Scene footprints") -> folium.FeatureGroup:
    """Scene footprints (STAC item dicts) as one GeoJSON layer with id/date/cloud tooltips."""
    features = [
        {"type": "Feature", "geometry": it["geometry"],
         "properties": {"id": it["id"], "datetime": str(it["properties"].get("datetime", ""))[:10],
                        "cloud": it["properties"].get("eo:cloud_cover")}}
        for it in items
    ]
    group = folium.FeatureGroup(name=name)
    if features:
        folium.GeoJson(
            {"type": "FeatureCollection", "features": features},
            style_function=lambda _: {"color": "#1565c0", "weight": 1, "fillOpacity": 0.04},
            tooltip=folium.GeoJsonTooltip(["id", "datetime", "cloud"], aliases=["scene", "date", "cloud %"]),
        ).add_to(group)
    return group


def aoi_layer(geojson: Mapping[str, Any], name: str = "Area of interest") -> folium.FeatureGroup:
    """The current AOI outline."""
    group = folium.FeatureGroup(name=name)
    folium.GeoJson(dict(geojson), style_function=lambda _: {"color": "#d84315", "weight": 2,
                                                             "fillOpacity": 0.1}).add_to(group)
    return group


def show_map(m: folium.Map, *, key: str, layers: Sequence[folium.FeatureGroup] = (), height: int = 520,
             fit: Sequence[float] | None = None) -> dict[str, Any] | None:
    """Render ``m`` with local assets; return the drawn shapes as a GeoJSON FeatureCollection, or None.

    ``layers`` are added and the view moved to the ``fit`` bbox without re-mounting the map, so a drawing
    survives new search results.
    """
    localize(m, static_dir(), static_base_url())
    view = {"center": bbox_center(fit), "zoom": fit_zoom(fit)} if fit is not None else {}
    state = st_folium(m, key=key, height=height, use_container_width=True, **view,
                      feature_group_to_add=list(layers) or None,
                      returned_objects=["all_drawings", "last_active_drawing"])
    drawings = (state or {}).get("all_drawings") or []
    return {"type": "FeatureCollection", "features": drawings} if drawings else None


def show_view_map(m: folium.Map, *, key: str, height: int = 560, clicks: bool = False) -> tuple[float, float] | None:
    """Render ``m`` (no drawing) with local assets; with ``clicks``, return the last clicked (lat, lon)."""
    localize(m, static_dir(), static_base_url())
    state = st_folium(m, key=key, height=height, use_container_width=True,
                      returned_objects=["last_clicked"] if clicks else [])
    point = (state or {}).get("last_clicked")
    return (point["lat"], point["lng"]) if point else None
