"""The crop-map product: the one set of files a run exports, written by :func:`write_product`.

The predict CLI writes it to a folder, the dashboard offers it as downloads (:func:`product_bytes`) and the
benchmark times its writing; all three get the same files with the same contents:

=====================  ==========================================================================
``<name>.tif``         classes (uint8 COG, colour table, class names, run manifest; 254 = uncertain,
                       255 = no data)
``<name>_confidence``  calibrated probability of the mapped class (float32 COG; NaN = no data)
``<name>_cropland``    cropland probability in percent (uint8 COG, 255 = no data; models with crop classes)
``<name>_areas.csv``   pixels, hectares and percent per class, uncertain apart, the cropland total
``<name>_aoi.geojson`` the area of interest (lon/lat)
``<name>.json``        the run manifest: scenes, model and checksum, parameters, calibration, versions, timings
=====================  ==========================================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from cropcore.aoi import AOI
from cropcore.errors import ConfigError
from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.legend import DEFAULT_PALETTE, UNCERTAIN_NAME, palette_colors, uncertain_color
from cropcore.models.meta import ModelMeta
from cropcore.products.export import MEMORY, write_cog, write_text_atomic
from cropcore.products.stats import class_areas


@dataclass(frozen=True)
class ProductFile:
    """One file of the product: its key, file-name suffix, and how to offer it for download."""

    key: str
    suffix: str
    label: str
    mime: str
    help: str

    def file_name(self, name: str) -> str:
        return f"{name}{self.suffix}"


FILES = (
    ProductFile("map", ".tif", "Crop map (COG)", "image/tiff",
                f"Classes as uint8 with a colour table, class names and the run manifest; {UNCERTAIN} = uncertain, "
                f"{NODATA} = no data"),
    ProductFile("confidence", "_confidence.tif", "Confidence (COG)", "image/tiff",
                "Calibrated probability of the mapped class, float32, NaN = no data"),
    ProductFile("cropland", "_cropland.tif", "Cropland probability (COG)", "image/tiff",
                f"Probability that the pixel is cropland (any crop class), percent 0-100 as uint8, {NODATA} = no data"),
    ProductFile("areas", "_areas.csv", "Class areas (CSV)", "text/csv",
                "Pixels, hectares and percent per class, uncertain pixels in their own row, the cropland total"),
    ProductFile("aoi", "_aoi.geojson", "Area of interest (GeoJSON)", "application/geo+json",
                "The area the map covers, in lon/lat"),
    ProductFile("manifest", ".json", "Run manifest (JSON)", "application/json",
                "Scenes, model and checksum, parameters, calibration, versions, timings"),
)


def product_files(prediction: xr.Dataset) -> tuple[ProductFile, ...]:
    """The files of a prediction's product: :data:`FILES`, without the cropland COG when it has no cropland."""
    return tuple(f for f in FILES if f.key != "cropland" or "cropland" in prediction)


def map_colors(meta: ModelMeta, palette: str = DEFAULT_PALETTE) -> dict[int, str]:
    """Colour of every value of the map: the legend's classes (in ``palette``, see
    :func:`cropcore.legend.palette_colors`) and "uncertain"."""
    colors = palette_colors(meta.colors, palette)
    return {**colors, UNCERTAIN: uncertain_color(colors.values())}


def check_name(name: str) -> str:
    """``name`` if it is a plain file name (no folder, no ``..``, not hidden), else :class:`ConfigError`."""
    if not name or name.startswith(".") or Path(name).name != name or "\\" in name:
        raise ConfigError(f"the file name {name!r} must be a plain name without folders or '..' (e.g. 'cropmap')")
    return name


def _render(key: str, dst: Path | str, prediction: xr.Dataset, meta: ModelMeta, manifest: Mapping[str, Any],
            aoi: AOI, palette: str = DEFAULT_PALETTE) -> bytes | Path:
    """Write one file of the product to ``dst`` (a path, or :data:`MEMORY` for bytes)."""
    tags = {"MANIFEST": manifest}
    if key == "map":
        return write_cog(prediction["class"], dst, class_names=meta.class_names, colormap=map_colors(meta, palette),
                         nodata=NODATA, tags=tags, extra_classes={UNCERTAIN: UNCERTAIN_NAME})
    if key == "confidence":
        return write_cog(prediction["confidence"], dst,
                         tags={**tags, "DESCRIPTION": "calibrated probability of the mapped class"})
    if key == "cropland":
        return write_cog(prediction["cropland"], dst, nodata=NODATA,
                         tags={**tags, "DESCRIPTION": "cropland probability, percent", "UNITS": "percent"})
    if key == "areas":
        table = class_areas(prediction["class"], meta.class_names, nodata=NODATA, crop_ids=meta.crop_ids)
        text = table.to_csv(index=False)
    elif key == "aoi":
        text = json.dumps(aoi.feature_collection())
    else:
        text = json.dumps(manifest, indent=2, default=str)
    return text.encode() if dst == MEMORY else write_text_atomic(text, Path(dst))


def product_bytes(prediction: xr.Dataset, meta: ModelMeta, *, manifest: Mapping[str, Any],
                  aoi: AOI, palette: str = DEFAULT_PALETTE) -> dict[str, bytes]:
    """Every file of the product in memory, by key (see :func:`product_files`); ``palette`` colours the crop
    map's colour table."""
    return {f.key: _render(f.key, MEMORY, prediction, meta, manifest, aoi, palette)  # type: ignore[misc]
            for f in product_files(prediction)}


def write_product(prediction: xr.Dataset, meta: ModelMeta, out: Path, *, manifest: Mapping[str, Any], aoi: AOI,
                  name: str = "cropmap", palette: str = DEFAULT_PALETTE) -> dict[str, Path]:
    """Write every file of the product into the folder ``out``; returns their paths by key.

    ``name`` is a plain file name (no folder, no ``..``); ``palette`` colours the crop map's colour table. Each
    file is written atomically; when one fails (or the run is interrupted) the files this call already wrote are
    removed: all or nothing.
    """
    check_name(name)
    written: dict[str, Path] = {}
    try:
        for f in product_files(prediction):
            written[f.key] = _render(f.key, out / f.file_name(name), prediction, meta, manifest, aoi,
                                     palette)  # type: ignore[assignment]
    except BaseException:
        for path in written.values():
            path.unlink(missing_ok=True)
        raise
    return written
