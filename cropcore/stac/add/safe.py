"""Read a Sentinel-2 SAFE product folder (Level-1C or Level-2A) from its own metadata.

The product metadata (``MTD_MSIL2A.xml`` / ``MTD_MSIL1C.xml``, ESA's "User Product" format, the same for
every processing baseline since 02.04) gives the product name, sensing start, processing level, product
type, processing baseline, spacecraft, cloud cover, the no-data value, the quantification value
(``BOA_QUANTIFICATION_VALUE`` in L2A, ``QUANTIFICATION_VALUE`` in L1C), the per-band add offsets of baseline
04.00 and later (``BOA_ADD_OFFSET`` in L2A, ``RADIO_ADD_OFFSET`` in L1C; none before) and the list of image
files. The one granule's ``GRANULE/*/MTD_TL.xml`` gives the tile id. Each band is taken at its finest
resolution (an L2A product holds B02 at 10, 20 and 60 m: the 10 m file is used).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

from cropcore.errors import ConfigError
from cropcore.stac.add.product import BAND_IDS, L1C_NOTE, Product, bands_named, resolution_named

METADATA_FILES = {"L2A": "MTD_MSIL2A.xml", "L1C": "MTD_MSIL1C.xml"}
_QUANTIFICATION = {"L2A": "BOA_QUANTIFICATION_VALUE", "L1C": "QUANTIFICATION_VALUE"}
_ADD_OFFSET = {"L2A": "BOA_ADD_OFFSET", "L1C": "RADIO_ADD_OFFSET"}
_EXTENSIONS = {"JPEG2000": ".jp2", "GeoTIFF": ".tif"}


def safe_level(path: Path) -> str | None:
    """``"L2A"`` or ``"L1C"`` when ``path`` is a SAFE folder (holds its product metadata), else None."""
    return next((level for level, name in METADATA_FILES.items() if (path / name).is_file()), None)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _Metadata:
    """An XML metadata file, searched by element name whatever its namespace and depth."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None

    def all(self, tag: str) -> list[ET.Element]:
        return [e for e in self.root.iter() if _local(e.tag) == tag]

    def text(self, tag: str) -> str:
        found = self.all(tag)
        if not found or not (found[0].text or "").strip():
            raise ConfigError(f"{self.path} has no {tag}: it is not Sentinel-2 product metadata, or a damaged copy")
        return found[0].text.strip()

    def number(self, tag: str) -> float:
        try:
            return float(self.text(tag))
        except ValueError:
            raise ConfigError(f"{self.path}: {tag} is not a number ({self.text(tag)!r})") from None


def _nodata(mtd: _Metadata) -> int:
    """The ``NODATA`` special value (0 in every product so far)."""
    for special in mtd.all("Special_Values"):
        values = {_local(e.tag): (e.text or "").strip() for e in special}
        if values.get("SPECIAL_VALUE_TEXT") == "NODATA":
            return int(values["SPECIAL_VALUE_INDEX"])
    return 0


def _add_offsets(mtd: _Metadata, level: str) -> dict[str, float]:
    """Per-band add offsets (DN) of processing baseline 04.00 and later; none in older products."""
    offsets = {}
    for element in mtd.all(_ADD_OFFSET[level]):
        band_id, value = element.get("band_id", ""), (element.text or "").strip()
        if not band_id.isdigit() or int(band_id) >= len(BAND_IDS) or not re.fullmatch(r"-?\d+(\.\d*)?", value):
            raise ConfigError(f"{mtd.path}: unreadable {_ADD_OFFSET[level]} (band_id {band_id!r}, value {value!r})")
        offsets[BAND_IDS[int(band_id)]] = float(value)
    return offsets


def _image_files(safe: Path, mtd: _Metadata) -> dict[str, Path]:
    """The band files the product lists, each band at its finest resolution."""
    granules = mtd.all("Granule")
    if len(granules) != 1:
        raise ConfigError(f"{safe} holds {len(granules)} granules: only single-tile products (all since "
                          "December 2016) can be added; download the tile's own product")
    ext = _EXTENSIONS.get(granules[0].get("imageFormat", "JPEG2000"), ".jp2")
    best: dict[str, tuple[int, Path]] = {}
    for element in mtd.all("IMAGE_FILE"):
        path = safe / f"{(element.text or '').strip()}{ext}"
        named = bands_named(path.stem)
        if len(named) != 1:
            continue  # TCI, AOT, WVP: not bands the models read
        if not path.is_file():
            raise ConfigError(f"{safe} lists {path.relative_to(safe)} but the file is missing: the download is "
                              "incomplete; download the product again")
        resolution = resolution_named(path.stem) or 0
        if named[0] not in best or resolution < best[named[0]][0]:
            best[named[0]] = (resolution, path)
    if not best:
        raise ConfigError(f"{mtd.path} lists no band files (IMAGE_FILE): nothing to add")
    return {band: path for band, (_, path) in best.items()}


def _tile_id(safe: Path) -> str:
    tiles = sorted(safe.glob("GRANULE/*/MTD_TL.xml"))
    if len(tiles) != 1:
        raise ConfigError(f"{safe} should hold one GRANULE/*/MTD_TL.xml, found {len(tiles)}: the download is "
                          "incomplete or not a single-tile product")
    return _Metadata(tiles[0]).text("TILE_ID")


def read_safe(safe: Path) -> Product:
    """Describe the SAFE folder ``safe`` from its metadata (see the module docstring)."""
    level = safe_level(safe)
    if level is None:
        raise ConfigError(f"{safe} has no {' or '.join(METADATA_FILES.values())}: not a SAFE product folder")
    mtd = _Metadata(safe / METADATA_FILES[level])
    stated = mtd.text("PROCESSING_LEVEL")  # "Level-2A" (or "Level-2Ap" for 2017 pilot products), "Level-1C"
    if not stated.startswith(f"Level-{level[1:]}"):
        raise ConfigError(f"{mtd.path} says PROCESSING_LEVEL {stated}, not Level-{level[1:]}: a damaged product")
    name = mtd.text("PRODUCT_URI").removesuffix(".SAFE")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{mtd.path}: PRODUCT_URI {name!r} is not a Sentinel-2 product name")
    tile_id = _tile_id(safe)
    tile = re.search(r"_T(\d{2}[C-X][A-Z]{2})(_|$)", f"{name}_{tile_id}")
    if tile is None:
        raise ConfigError(f"{mtd.path}: no MGRS tile in PRODUCT_URI or TILE_ID ({name}, {tile_id})")
    try:
        when = datetime.fromisoformat(mtd.text("PRODUCT_START_TIME"))
    except ValueError:
        raise ConfigError(f"{mtd.path}: PRODUCT_START_TIME {mtd.text('PRODUCT_START_TIME')!r} is not a time") from None
    quantification = mtd.number(_QUANTIFICATION[level])
    if quantification <= 0:
        raise ConfigError(f"{mtd.path}: {_QUANTIFICATION[level]} must be positive, got {quantification:g}")
    bands = _image_files(safe, mtd)
    return Product(
        item_id=name, source=safe, when=when, level=level, bands=bands, tile=tile.group(1),
        baseline=mtd.text("PROCESSING_BASELINE"), quantification=quantification, add_offsets=_add_offsets(mtd, level),
        nodata=dict.fromkeys(bands, _nodata(mtd)), cloud_cover=mtd.number("Cloud_Coverage_Assessment"),
        platform=mtd.text("SPACECRAFT_NAME").lower(),
        properties={"s2:product_uri": f"{name}.SAFE", "s2:tile_id": tile_id,
                    "s2:product_type": mtd.text("PRODUCT_TYPE"), "s2:generation_time": mtd.text("GENERATION_TIME")},
        notes=(f"{name} {L1C_NOTE}",) if level == "L1C" else (),
    )
