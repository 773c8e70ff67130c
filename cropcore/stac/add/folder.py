"""Read a folder of per-band Sentinel-2 files (GeoTIFF, COG or JPEG 2000), one band per file.

The rule: a file (``.tif``, ``.tiff``, ``.jp2``, anywhere below the folder) belongs to band X when X
(``B01`` ... ``B12``, ``B8A`` or ``SCL``) is one of the words of its name, words being separated by
anything but letters and digits (``T31UFS_20210315T105029_B04_10m.tif``, ``B04.tif``, ``scl.tif``). Each
band needs exactly one file: two files for one band, or a file naming two bands, make the folder
ambiguous and it is refused with what was found. Files naming no band are ignored (and listed).

What the metadata of a SAFE product would say is read from the names (folder name first, then the files),
or given on the command line when the names do not tell:

- acquisition time: the first ``YYYYMMDDTHHMMSS`` of a name (``--datetime``);
- processing level: ``MSIL2A`` / ``L2A`` in a name or an ``SCL`` file mean Level-2A, ``MSIL1C`` / ``L1C``
  or a ``B10`` file (L2A products have no B10) mean Level-1C (``--level``);
- processing baseline: an ``N0500`` word (``--baseline``). From 04.00 on, digital numbers carry an add
  offset of -1000 (ESA's ``BOA_ADD_OFFSET`` / ``RADIO_ADD_OFFSET``, the same for every band so far);
- cloud cover: the share of SCL cloud and cirrus pixels (8, 9, 10) among the valid ones, as ESA's cloudy
  pixel percentage (``--cloud-cover``; without SCL and without it the item has no ``eo:cloud_cover``);
- MGRS tile: a ``T31UFS`` word, else the tile holding the centre of the first band;
- no data: each file's own no-data value, else 0 (Sentinel-2's); quantification 10000, as in every product.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from rasterio._err import CPLE_BaseError  # private: GDAL's errors, not re-exported by rasterio.errors
from rasterio.enums import Resampling
from rasterio.warp import transform

from cropcore.errors import ConfigError
from cropcore.stac.add.product import L1C_NOTE, PRODUCT_NAME, Product, bands_named, words
from cropcore.stac.build import mgrs_tile

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")
READ_ERRORS = (rasterio.errors.RasterioError, CPLE_BaseError, OSError)
#: SCL classes counted as cloud: medium and high probability cloud, thin cirrus.
SCL_CLOUD = (8, 9, 10)
NODATA = 0
QUANTIFICATION = 10000.0
ADD_OFFSET = -1000.0  # DN, from processing baseline 04.00 on


@dataclass(frozen=True)
class Stated:
    """What the user states on the command line for per-band folders (None: read it from the names)."""

    when: datetime | None = None
    level: str | None = None
    baseline: str | None = None
    cloud_cover: float | None = None


def _band_files(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """Band -> file by the naming rule, and the raster files naming no band."""
    rasters = sorted(p for p in folder.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES and p.is_file())
    claims: dict[str, list[Path]] = {}
    ignored, double = [], []
    for path in rasters:
        named = bands_named(path.stem)
        if len(named) > 1:
            double.append(path)
        elif named:
            claims.setdefault(named[0], []).append(path)
        else:
            ignored.append(path)
    clashes = {band: paths for band, paths in claims.items() if len(paths) > 1}
    if clashes or double:
        found = "; ".join([*(f"{band}: {', '.join(p.name for p in paths)}" for band, paths in sorted(clashes.items())),
                           *(f"{p.name} names {' and '.join(bands_named(p.stem))}" for p in double)])
        raise ConfigError(f"{folder} is ambiguous ({found}): keep exactly one file per band, named with its band")
    if not claims:
        files = sorted(p.name for p in folder.rglob("*") if p.is_file())
        seen = f"found: {', '.join(files[:8])}{', ...' if len(files) > 8 else ''}" if files else "it is empty"
        raise ConfigError(f"{folder} holds no Sentinel-2 band file ({seen}): name each .tif, .tiff or .jp2 file "
                          "with its band (B02.tif, ..._B04_10m.tif, SCL.tif) or add a SAFE folder")
    return {band: paths[0] for band, paths in claims.items()}, ignored


def _one(folder: Path, what: str, values: set[str], option: str) -> str | None:
    if len(values) > 1:
        raise ConfigError(f"the names in {folder} give several {what}s ({', '.join(sorted(values))}): pass {option}")
    return next(iter(values), None)


def _check(path: Path, band: str) -> tuple[rasterio.crs.CRS, int]:
    """Open ``path`` and check it holds one band of Sentinel-2 digital numbers; returns its CRS and no data."""
    try:
        with rasterio.open(path) as src:
            count, dtype, crs, nodata = src.count, src.dtypes[0], src.crs, src.nodata
    except READ_ERRORS as exc:
        raise ConfigError(f"cannot read {path}: {' '.join(str(exc).split())[:200]}") from None
    allowed = ("uint8", "uint16") if band == "SCL" else ("uint16",)
    if count != 1 or dtype not in allowed or crs is None:
        raise ConfigError(f"{path} holds {count} band(s) of {dtype}{'' if crs else ' without a CRS'}: expected one "
                          f"georeferenced band of {' or '.join(allowed)} Sentinel-2 digital numbers")
    return crs, NODATA if nodata is None else int(nodata)


def _scl_cloud_cover(scl: Path, nodata: int) -> float:
    """Percentage of valid SCL pixels classified cloud or cirrus (read at most 1024 px wide)."""
    with rasterio.open(scl) as src:
        factor = max(1, -(-max(src.width, src.height) // 1024))
        classes = src.read(1, out_shape=(src.height // factor or 1, src.width // factor or 1),
                           resampling=Resampling.nearest)
    valid = classes != nodata
    return round(float(np.isin(classes[valid], SCL_CLOUD).mean() * 100.0), 2) if valid.any() else 100.0


def _centre_tile(path: Path) -> str:
    with rasterio.open(path) as src:
        (lon,), (lat,) = transform(src.crs, "EPSG:4326", [(src.bounds.left + src.bounds.right) / 2],
                                   [(src.bounds.bottom + src.bounds.top) / 2])
    return mgrs_tile(lon, lat)


def read_band_folder(folder: Path, stated: Stated) -> Product:
    """Describe the per-band folder ``folder`` (see the module docstring for the rules)."""
    if any(folder.rglob("*.SAFE")):
        raise ConfigError(f"{folder} holds SAFE products: add each one (catalog add {folder}/*.SAFE)")
    bands, ignored = _band_files(folder)
    checked = {band: _check(path, band) for band, path in bands.items()}
    crss = {crs.to_string() for crs, _ in checked.values()}
    if len(crss) > 1:
        raise ConfigError(f"the bands in {folder} are in different CRSs ({', '.join(sorted(crss))}): one product "
                          "has one CRS")
    names = [folder.name, *(str(p.relative_to(folder)) for p in bands.values())]
    name_words = {w for name in names for w in words(name)}
    times = {m.group(0) for name in names if (m := re.search(r"\d{8}T\d{6}", name))}
    when = stated.when or _parse_time(_one(folder, "acquisition time", times, "--datetime"), folder)
    level = stated.level or _level(folder, name_words, bands)
    baselines = {f"{w[1:3]}.{w[3:]}" for w in name_words if re.fullmatch(r"N\d{4}", w)}
    baseline = stated.baseline or _one(folder, "processing baseline", baselines, "--baseline")
    if baseline is None:
        raise ConfigError(f"cannot tell the processing baseline of {folder} (from 04.00 on the digital numbers carry "
                          "a -1000 offset): name the folder after the product (..._N0500_...) or pass --baseline")
    tile = _one(folder, "MGRS tile", {w[1:] for w in name_words if re.fullmatch(r"T\d{2}[C-X][A-Z]{2}", w)},
                "a folder holding one tile") or _centre_tile(next(iter(bands.values())))
    cloud = stated.cloud_cover if stated.cloud_cover is not None else (
        _scl_cloud_cover(bands["SCL"], checked["SCL"][1]) if "SCL" in bands else None)
    item_id = folder.name if PRODUCT_NAME.fullmatch(folder.name) else f"S2_MSI{level}_{when:%Y%m%dT%H%M%S}_T{tile}"
    platforms = [w for w in name_words if w in ("S2A", "S2B", "S2C")]
    notes = [f"{item_id} {L1C_NOTE}"] if level == "L1C" else []
    if cloud is None:
        notes.append(f"{item_id} has no cloud cover (no SCL file, no --cloud-cover): searches with a cloud limit "
                     "skip it")
    if ignored:
        notes.append(f"ignored (no band in the name): {', '.join(p.name for p in ignored)}")
    return Product(
        item_id=item_id, source=folder, when=when, level=level, bands=bands, tile=tile, baseline=baseline,
        quantification=QUANTIFICATION, add_offsets=dict.fromkeys(bands, ADD_OFFSET) if baseline >= "04.00" else {},
        nodata={band: nodata for band, (_, nodata) in checked.items()}, cloud_cover=cloud,
        platform=f"sentinel-2{platforms[0][-1].lower()}" if len(platforms) == 1 else "sentinel-2", notes=tuple(notes),
    )


def _parse_time(text: str | None, folder: Path) -> datetime:
    if text is None:
        raise ConfigError(f"cannot tell when {folder} was acquired: name the folder after the product "
                          "(S2B_MSIL2A_20210315T105029_...) or pass --datetime 2021-03-15T10:50:29")
    return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def _level(folder: Path, name_words: set[str], bands: dict[str, Path]) -> str:
    evidence = {"L2A" for w in ("MSIL2A", "L2A", "SCL") if w in name_words or w in bands}
    evidence |= {"L1C" for w in ("MSIL1C", "L1C", "B10") if w in name_words or w in bands}
    if len(evidence) != 1:
        why = "the names and files say both" if evidence else "neither the names nor the files tell"
        raise ConfigError(f"is {folder} Level-1C or Level-2A? {why}: pass --level L2A or --level L1C")
    return evidence.pop()
