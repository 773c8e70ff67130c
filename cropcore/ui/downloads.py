"""Widgets of the Export page: the run's files as download buttons (built in memory, once per run)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import streamlit as st
from shapely.geometry import mapping

from cropcore.aoi import normalize_aoi
from cropcore.inference.predict import NODATA
from cropcore.pipeline import RunResult
from cropcore.products.export import write_cog
from cropcore.ui.cropmap import areas
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
def downloads(result: RunResult, name: str = "cropmap") -> list[Download]:
    """The crop-map and confidence COGs, class areas (CSV), the AOI (GeoJSON) and the manifest (JSON).

    One manifest for all files, stored in both COGs, so they tell what produced them.
    """
    manifest = result.manifest()
    tags = {"MANIFEST": manifest}
    crop_map = write_cog(result.prediction["class"], ":mem:", class_names=result.class_names,
                         colormap=result.colors, nodata=NODATA, tags=tags)
    confidence = write_cog(result.prediction["confidence"], ":mem:",
                           tags={**tags, "DESCRIPTION": "max class probability"})
    aoi = {"type": "FeatureCollection",
           "features": [{"type": "Feature", "properties": {"name": "area of interest"},
                         "geometry": mapping(normalize_aoi(result.params.aoi))}]}
    return [
        Download("Crop map (COG)", crop_map, f"{name}.tif", "image/tiff",
                 "Classes as uint8 with a colour table, class names and the run manifest; 255 = no data"),
        Download("Confidence (COG)", confidence, f"{name}_confidence.tif", "image/tiff",
                 "Probability of the predicted class, float32, NaN = no data"),
        Download("Class areas (CSV)", areas(result).to_csv(index=False).encode(), f"{name}_areas.csv",
                 "text/csv", "Pixels, hectares and percent per class"),
        Download("Area of interest (GeoJSON)", json.dumps(aoi).encode(), f"{name}_aoi.geojson",
                 "application/geo+json", "The area the map covers, in lon/lat"),
        Download("Run manifest (JSON)", json.dumps(manifest, indent=2, default=str).encode(),
                 f"{name}.json", "application/json", "Scenes, model and checksum, parameters, versions, timings"),
    ]


def file_size(n: int) -> str:
    """A byte count for people: ``812 B``, ``6.1 kB``, ``2.3 MB``."""
    if n < 1000:
        return f"{n} B"
    return f"{n / 1e3:,.1f} kB" if n < 1e6 else f"{n / 1e6:,.1f} MB"


def buttons(result: RunResult) -> None:
    """One download button per file, with its size."""
    for item in downloads(result):
        st.download_button(f"{item.label} · {file_size(len(item.data))}", item.data, file_name=item.file_name,
                           mime=item.mime, help=item.help, on_click="ignore", icon=":material/download:")
