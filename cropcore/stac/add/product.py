"""What a downloaded Sentinel-2 product holds: its band files and the metadata its STAC item needs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cropcore.legend import S2_BANDS

#: Asset keys of the embedded catalog: the 13 MSI bands and the L2A scene classification.
BAND_NAMES: tuple[str, ...] = (*S2_BANDS, "SCL")
#: ESA's product type per processing level (``PRODUCT_TYPE``, written as ``s2:product_type``).
PRODUCT_TYPES = {"L1C": "S2MSI1C", "L2A": "S2MSI2A"}
#: The bands in the order of the ``band_id`` attributes of the product metadata (0 = B01 ... 12 = B12).
BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
#: A Sentinel-2 product name, e.g. ``S2B_MSIL2A_20210315T105029_N0500_R051_T31UFS_20230101T000000``.
PRODUCT_NAME = re.compile(r"^S2[A-D_]_MSIL(1C|2A)_\d{8}T\d{6}_N\d{4}_R\d{3}_T\d{2}[C-X][A-Z]{2}_\d{8}T\d{6}$")
L1C_NOTE = ("is Level-1C (top of atmosphere): searchable, but the crop models need Level-2A surface "
            "reflectance, so predict refuses it")


def words(name: str) -> list[str]:
    """The upper-cased words of a file or folder name (split on anything but letters and digits)."""
    return [w for w in re.split(r"[^A-Za-z0-9]+", name.upper()) if w]


def bands_named(name: str) -> list[str]:
    """The band names (``B01`` ... ``B12``, ``B8A``, ``SCL``) that are words of ``name``."""
    return [w for w in words(name) if w in BAND_NAMES]


def resolution_named(name: str) -> int | None:
    """The resolution a file name states (``..._B04_20m`` -> 20), if any."""
    found = [int(w[:-1]) for w in words(name) if re.fullmatch(r"\d+M", w)]
    return found[0] if found else None


@dataclass(frozen=True)
class Product:
    """One acquisition: where its bands are and how their digital numbers become reflectance.

    Reflectance = (DN + ``add_offsets[band]``) / ``quantification``, i.e. STAC raster ``scale`` =
    1 / quantification and ``offset`` = add offset / quantification.
    """

    item_id: str
    source: Path
    when: datetime
    level: str  # "L1C" or "L2A"
    bands: dict[str, Path]
    tile: str  # MGRS tile, e.g. "31UFS"
    baseline: str  # processing baseline, e.g. "05.00"
    quantification: float
    add_offsets: dict[str, float]  # DN added by the processor (BOA_ADD_OFFSET / RADIO_ADD_OFFSET), per band
    nodata: dict[str, int]  # per band
    cloud_cover: float | None
    platform: str = "sentinel-2"
    properties: dict[str, Any] = field(default_factory=dict)  # further s2:* fields read from the metadata
    notes: tuple[str, ...] = ()

    def scale_offset(self, band: str) -> tuple[float, float]:
        """STAC raster ``scale`` and ``offset`` of a reflectance band (reflectance = DN * scale + offset)."""
        return 1.0 / self.quantification, self.add_offsets.get(band, 0.0) / self.quantification
