"""Sentinel-2 band metadata and Scene Classification (SCL) codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class S2Band:
    """One Sentinel-2 MSI band."""

    name: str  # asset key, e.g. "B04"
    common_name: str | None
    center_wavelength: float  # micrometres
    full_width_half_max: float  # micrometres
    resolution: int  # native ground sampling distance, metres


S2_BANDS: dict[str, S2Band] = {
    b.name: b
    for b in (
        S2Band("B01", "coastal", 0.443, 0.027, 60),
        S2Band("B02", "blue", 0.490, 0.098, 10),
        S2Band("B03", "green", 0.560, 0.045, 10),
        S2Band("B04", "red", 0.665, 0.038, 10),
        S2Band("B05", "rededge", 0.704, 0.019, 20),
        S2Band("B06", "rededge", 0.740, 0.018, 20),
        S2Band("B07", "rededge", 0.783, 0.028, 20),
        S2Band("B08", "nir", 0.842, 0.145, 10),
        S2Band("B8A", "nir08", 0.865, 0.033, 20),
        S2Band("B09", "nir09", 0.945, 0.026, 60),
        S2Band("B10", "cirrus", 1.375, 0.075, 60),
        S2Band("B11", "swir16", 1.610, 0.143, 20),
        S2Band("B12", "swir22", 2.190, 0.242, 20),
    )
}

#: Scene Classification Layer classes of Sentinel-2 L2A.
SCL_CLASSES: dict[int, str] = {
    0: "no data",
    1: "saturated or defective",
    2: "dark area pixels",
    3: "cloud shadows",
    4: "vegetation",
    5: "not vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud medium probability",
    9: "cloud high probability",
    10: "thin cirrus",
    11: "snow",
}

#: SCL classes treated as invalid observations by default.
SCL_INVALID: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)

#: Reflectance scale of L2A digital numbers, and the BOA offset from processing baseline 04.00 on.
S2_SCALE = 1e-4
S2_BOA_OFFSET = 1000
