"""Widgets of the Fields page: a parcel file in (one row per field, drawn over the map coloured by its majority
class, a clicked parcel's NDVI curve), the map as field polygons out, both as downloads."""

from __future__ import annotations

import html
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import streamlit as st
from shapely.geometry import mapping

from cropcore.errors import CropcoreError
from cropcore.legend import DEFAULT_PALETTE
from cropcore.pipeline import RunResult
from cropcore.products import plots
from cropcore.products.parcels import FORMATS, OK, TINY, MapLayers, parcel_stats
from cropcore.products.polygons import DEFAULT_MMU_HA, polygon_bytes, vectorize
from cropcore.products.product import map_colors
from cropcore.ui.analysis import class_phenology
from cropcore.ui.cropmap import class_image, legend_entries, true_colour_image
from cropcore.ui.downloads import file_size
from cropcore.ui.map import aoi_layer, base_map, fit_zoom, image_layer, show_view_map
from cropcore.ui.palette import current_palette
from cropcore.ui.runs import BY_RUN

UPLOAD = "widget.fields_upload"
MMU = "widget.fields_mmu"
FIELDS_MAP = "widget.fields_map"
#: Parcels drawn on the map at most (all are in the table and the downloads).
MAX_DRAWN = 3000
NO_CLASS = "#9e9e9e"
#: Leaflet's shadow pane (z-index 500) is above the image overlays (400): parcels and polygons are drawn over the
#: imagery and the crop map, not under them.
VECTOR_PANE = "shadowPane"
CLICKED = "cropcore.fields_clicked"  # (parcel file name, last clicked (lat, lon)): kept across reruns
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parcels:
    """The statistics of an uploaded parcel file: the summary line, the rows, and the two files."""

    name: str
    line: str
    rows: gpd.GeoDataFrame  # lon/lat
    gpkg: bytes
    parquet: bytes


def _safe_name(name: str) -> str:
    """The uploaded file's own name, without folders (it is shown in messages)."""
    plain = Path(name).name.lstrip(".")
    return plain or "parcels"


@st.cache_data(hash_funcs=BY_RUN, max_entries=8, show_spinner="Summarising the parcels...")
def parcel_table(result: RunResult, name: str, data: bytes) -> Parcels:
    """Per-parcel statistics of an uploaded file on the run's map (see :mod:`cropcore.products.parcels`)."""
    with tempfile.TemporaryDirectory(prefix="cropcore-fields-") as folder:
        source = Path(folder) / _safe_name(name)
        source.write_bytes(data)
        out = {"gpkg": Path(folder) / "out" / "parcels.gpkg", "parquet": Path(folder) / "out" / "parcels.parquet"}
        layers = MapLayers.from_prediction(result.prediction, result.reflectance, result.meta.class_names)
        summary = parcel_stats(source, layers, out)
        rows = gpd.read_parquet(out["parquet"])
        rows = rows.to_crs(4326) if rows.crs is not None else rows
        return Parcels(source.name, summary.line(), rows, out["gpkg"].read_bytes(), out["parquet"].read_bytes())


@st.cache_data(hash_funcs=BY_RUN, max_entries=8, show_spinner="Vectorising the map...")
def field_polygons(result: RunResult, mmu_ha: float) -> tuple[gpd.GeoDataFrame, str]:
    """The run's map as field polygons under a minimum mapping unit, and the summary line."""
    gdf, summary = vectorize(result.prediction, result.meta.class_names, mmu_ha=mmu_ha)
    return gdf, summary.line()


@st.cache_data(hash_funcs=BY_RUN, max_entries=8, show_spinner="Writing the polygons...")
def polygon_files(result: RunResult, mmu_ha: float) -> dict[str, bytes]:
    """The polygons as GeoPackage, GeoParquet and GeoJSON files, by suffix."""
    gdf, _ = field_polygons(result, mmu_ha)
    return {suffix: polygon_bytes(gdf, suffix) for suffix in (".gpkg", ".parquet", ".geojson")}


def upload(result: RunResult) -> Parcels | None:
    """The parcel-file uploader; the statistics of the uploaded file, or None (errors are shown, not raised)."""
    kinds = sorted({s.lstrip(".") for s in FORMATS} - {"shp"})
    file = st.file_uploader("Parcel file", type=kinds, key=UPLOAD,
                            help="Your fields: GeoJSON, GeoPackage, GeoParquet or a zipped Shapefile (.zip with the "
                                 ".shp, .shx, .dbf and .prj). Any CRS; the first layer of a GeoPackage.")
    if file is None:
        st.info("Upload a parcel file to get one row per field: majority class, its share, mean confidence, "
                "uncertain share, area and NDVI curve.")
        return None
    try:
        return parcel_table(result, file.name, file.getvalue())
    except CropcoreError as exc:
        st.error(f"{exc}", icon=":material/error:")
    except Exception as exc:  # an unforeseen fault: one line here, the details in the server log
        _log.exception("parcel file %s", file.name)
        st.error(f"{_safe_name(file.name)} could not be used ({type(exc).__name__}: "
                 f"{(str(exc).splitlines() or [''])[0][:200]}); check that it opens in QGIS.", icon=":material/error:")
    return None


def _colour(row: pd.Series, colors: dict[int, str]) -> str:
    return colors.get(int(row["class_id"]), NO_CLASS) if pd.notna(row["class_id"]) else NO_CLASS


def parcels_layer(parcels: Parcels, colors: dict[int, str]) -> folium.FeatureGroup:
    """The parcels (at most :data:`MAX_DRAWN`) filled with their majority class's colour; without statistics
    grey and dashed."""
    rows = parcels.rows[parcels.rows.geometry.notna()].head(MAX_DRAWN)
    shown = rows[["parcel", "status", "class", "majority_share", "geometry"]].copy()
    shown["class"] = shown["class"].fillna("-")
    shown["majority_share"] = (100 * shown["majority_share"]).round(0).fillna(0)
    shown["colour"] = [_colour(r, colors) for _, r in rows.iterrows()]
    group = folium.FeatureGroup(name="Parcels (majority class)")
    if len(shown):
        folium.GeoJson(
            shown.__geo_interface__,
            style_function=lambda f: {"color": "#212121", "weight": 1.5, "fillColor": f["properties"]["colour"],
                                      "fillOpacity": 0.7 if f["properties"]["status"] in (OK, TINY) else 0.15,
                                      "dashArray": None if f["properties"]["status"] in (OK, TINY) else "4 4"},
            tooltip=folium.GeoJsonTooltip(["parcel", "class", "majority_share", "status"],
                                          aliases=["parcel", "majority class", "share %", "status"],
                                          direction="top"),  # "auto" put it off the map's left edge
            pane=VECTOR_PANE,
        ).add_to(group)
    return group


def polygons_layer(gdf: gpd.GeoDataFrame, colors: dict[int, str]) -> folium.FeatureGroup:
    """The field polygons, outlined in their class colour (off until ticked in the layer switcher)."""
    group = folium.FeatureGroup(name="Field polygons (vectorised map)", show=False)
    if len(gdf):
        shown = gdf[["class_id", "class", "area_ha", "geometry"]].to_crs(4326)
        shown = shown.assign(colour=[colors.get(int(i), NO_CLASS) for i in shown["class_id"]],
                             area_ha=shown["area_ha"].round(2))
        folium.GeoJson(shown.__geo_interface__,
                       style_function=lambda f: {"color": f["properties"]["colour"], "weight": 2, "fillOpacity": 0},
                       tooltip=folium.GeoJsonTooltip(["class", "area_ha"], aliases=["class", "ha"]),
                       pane=VECTOR_PANE).add_to(group)
    return group


def fields_map(result: RunResult, parcels: Parcels | None, polygons: gpd.GeoDataFrame,
               palette: str = DEFAULT_PALETTE) -> folium.Map:
    """True colour, the crop map (off), the parcels and the field polygons (off) over the run's area."""
    colors = map_colors(result.meta, palette)
    geom = result.params.aoi.geometry
    layers = [image_layer(*true_colour_image(result, None), name="Sentinel-2 true colour"),
              image_layer(*class_image(result, palette), name="Crop map", opacity=0.75, show=False),
              aoi_layer(mapping(geom)), polygons_layer(polygons, colors)]
    if parcels is not None:
        layers.append(parcels_layer(parcels, colors))
    return base_map(geom.bounds, zoom=fit_zoom(geom.bounds, 450), draw=False, layers=layers, collapsed=True,
                    legend=legend_entries(result, palette), legend_title="Majority class")


def table(parcels: Parcels) -> None:
    """The summary line and one row per parcel (NDVI columns and geometry left out)."""
    st.success(parcels.line, icon=":material/check_circle:")
    rows = pd.DataFrame(parcels.rows.drop(columns="geometry"))
    rows = rows[[c for c in rows.columns if not c.startswith("ndvi_")]]
    st.dataframe(rows, hide_index=True, width="stretch", height=280, column_config={
        "majority_share": st.column_config.NumberColumn("majority share", format="percent"),
        "uncertain_share": st.column_config.NumberColumn("uncertain share", format="percent"),
        "confidence": st.column_config.NumberColumn("mean confidence", format="%.2f"),
        "area_ha": st.column_config.NumberColumn("area (ha)", format="%.2f"),
        "pixels": st.column_config.NumberColumn("mapped pixels"),
    })
    st.caption("Status *ok*: statistics of the pixels whose centre is inside; *tiny*: smaller than a pixel, the pixel "
               "under it; *no data*, *outside*: no statistics; *invalid*: skipped (the note says why). Shares are of "
               "the mapped pixels; overlapping parcels each keep all their pixels.")


def clicked_parcel(parcels: Parcels, point: tuple[float, float] | None) -> pd.Series | None:
    """The parcel under a clicked (lat, lon), the smallest when several overlap there."""
    if point is None:
        return None
    rows = parcels.rows
    hits = rows.sindex.query(shapely.Point(point[1], point[0]), predicate="intersects")
    if not len(hits):
        return None
    under = rows.iloc[hits]
    # areas in square degrees: parcels under one point share its latitude, so their order is the order in m²
    return under.iloc[int(np.argmin(shapely.area(under.geometry.to_numpy())))]


def curve(result: RunResult, parcels: Parcels, point: tuple[float, float] | None,
          palette: str = DEFAULT_PALETTE) -> None:
    """The clicked parcel's NDVI median per month beside its class's median over the whole map."""
    row = clicked_parcel(parcels, point)
    if row is None:
        st.info("Click a parcel on the map to see its NDVI curve." if point is None
                else "No parcel there: click inside one.")
        return
    months = [c for c in parcels.rows.columns if c.startswith("ndvi_")]
    name = row["class"] if pd.notna(row["class"]) else f"no class ({row['status']})"
    class_id = int(row["class_id"]) if pd.notna(row["class_id"]) else None
    pheno = class_phenology(result)
    figure = plots.pixel_ndvi_figure(
        result.axis, row[months].to_numpy(dtype=float), label=f"parcel {row['parcel']}",
        color=map_colors(result.meta, palette).get(class_id, NO_CLASS) if class_id is not None else NO_CLASS,
        reference=pheno[pheno["class_id"] == class_id] if class_id is not None else None)
    figure.update_layout(title=f"NDVI median of parcel {row['parcel']}: {html.escape(str(name))}")
    st.plotly_chart(figure, key="parcel_chart")
    share = f"{100 * row['majority_share']:.0f} %" if pd.notna(row["majority_share"]) else "-"
    st.caption(f"Parcel {row['parcel']} ({row['status']}{'; ' + row['note'] if row['note'] else ''}): {name}, "
               f"majority share {share}, {row['area_ha']:.2f} ha.")


def downloads(parcels: Parcels | None, result: RunResult, mmu_ha: float) -> None:
    """Download buttons: the parcels (GeoPackage, GeoParquet) and the field polygons (three formats)."""
    if parcels is not None:
        stem = Path(parcels.name).stem
        for label, data, suffix, mime in (("Parcels (GeoPackage)", parcels.gpkg, ".gpkg",
                                           "application/geopackage+sqlite3"),
                                          ("Parcels (GeoParquet)", parcels.parquet, ".parquet",
                                           "application/vnd.apache.parquet")):
            st.download_button(f"{label} · {file_size(len(data))}", data, file_name=f"{stem}_parcels{suffix}",
                               mime=mime, on_click="ignore", icon=":material/download:")
    files = polygon_files(result, mmu_ha)
    for suffix, label, mime in ((".gpkg", "GeoPackage", "application/geopackage+sqlite3"),
                                (".parquet", "GeoParquet", "application/vnd.apache.parquet"),
                                (".geojson", "GeoJSON", "application/geo+json")):
        st.download_button(f"Field polygons ({label}) · {file_size(len(files[suffix]))}", files[suffix],
                           file_name=f"field_polygons{suffix}", mime=mime, on_click="ignore",
                           icon=":material/download:")


def mmu_input() -> float:
    """The minimum mapping unit of the field polygons, hectares."""
    return float(st.number_input(
        "Minimum mapping unit (ha)", min_value=0.0, max_value=100.0, value=DEFAULT_MMU_HA, step=0.05, key=MMU,
        help="Patches of the map smaller than this are merged into their largest neighbour before vectorising. "
             "No-data pixels form no polygon; uncertain pixels form polygons of class 'uncertain'."))


def remembered_click(parcels: Parcels | None, clicked: tuple[float, float] | None) -> tuple[float, float] | None:
    """The last click on the map for this parcel file: a redrawn map (new MMU, new threshold) forgets its own."""
    if parcels is None:
        return None
    if clicked is not None:
        st.session_state[CLICKED] = (parcels.name, clicked)
        return clicked
    name, point = st.session_state.get(CLICKED, (None, None))
    return point if name == parcels.name else None


def page(result: RunResult) -> None:
    """The Fields page for a run: upload and MMU, the parcel table, the map with a clicked parcel's curve,
    the downloads."""
    palette = current_palette()
    upload_col, polygon_col = st.columns([3, 2], gap="large")
    with upload_col:
        parcels = upload(result)
    with polygon_col:
        mmu_ha = mmu_input()
        polygons, line = field_polygons(result, mmu_ha)
        st.caption(f"Field polygons: {line}.")
    if parcels is not None:
        table(parcels)
    map_col, curve_col = st.columns([3, 2], gap="medium")
    with map_col:
        clicked = show_view_map(fields_map(result, parcels, polygons, palette), key=FIELDS_MAP, height=560,
                                clicks=True)
        clicked = remembered_click(parcels, clicked)
        if parcels is not None and len(parcels.rows) > MAX_DRAWN:
            st.caption(f"The first {MAX_DRAWN:,} of {len(parcels.rows):,} parcels are drawn; the table and the "
                       "downloads hold them all.")
    with curve_col:
        if parcels is not None:
            curve(result, parcels, clicked, palette)
    st.subheader("Downloads")
    downloads(parcels, result, mmu_ha)
