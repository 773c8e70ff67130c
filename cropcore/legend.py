"""Sentinel-2 band metadata, Scene Classification (SCL) codes, the crop legend and the "uncertain" entry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


@dataclass(frozen=True)
class CropClass:
    """One class of a crop legend."""

    name: str
    color: str  # "#rrggbb"
    is_crop: bool


#: Default crop legend, chosen to fit the WorldCereal samples (France 2023 + East Africa 2017).
#: Codes are grouped with WorldCereal's LANDCOVER10 and CROPTYPE24 legends (see cropcore.data.worldcereal).
CROP_LEGEND: tuple[CropClass, ...] = (
    CropClass("grassland and other non-crop", "#9bd35a", False),
    CropClass("maize", "#f2c12e", True),
    CropClass("winter cereals", "#c8a165", True),
    CropClass("sorghum and millet", "#b04a2f", True),
    CropClass("oilseeds", "#ffff3c", True),
    CropClass("other crops", "#8e5bb5", True),
)

#: Legend name of pixels too uncertain to be given a class.
UNCERTAIN_NAME = "uncertain"
#: Colours "uncertain" may take, in order of preference: the first far enough from every class colour is used.
UNCERTAIN_COLORS = ("#4a4a4a", "#ff00ff", "#00e5ff", "#000000", "#ffffff")
#: Least distance in RGB (0-441) between the "uncertain" colour and any class colour.
DISTINCT_RGB = 80.0


def _rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def uncertain_color(class_colors: Iterable[str]) -> str:
    """The colour of "uncertain" for a legend: the first of :data:`UNCERTAIN_COLORS` at least
    :data:`DISTINCT_RGB` away from every class colour, else the one farthest from them."""
    classes = [_rgb(c) for c in class_colors]

    def distance(candidate: str) -> float:
        rgb = _rgb(candidate)
        return min((sum((a - b) ** 2 for a, b in zip(rgb, c, strict=True)) ** 0.5 for c in classes), default=441.0)

    return next((c for c in UNCERTAIN_COLORS if distance(c) >= DISTINCT_RGB), max(UNCERTAIN_COLORS, key=distance))


#: Names of the class palettes: each legend's own colours, or a colour-blind-safe set.
DEFAULT_PALETTE = "default"
CVD_PALETTE = "colour-blind safe"
PALETTES = (DEFAULT_PALETTE, CVD_PALETTE)
#: Okabe & Ito's qualitative palette (https://jfly.uni-koeln.de/color/), distinct under protanopia,
#: deuteranopia and tritanopia; black is left out (it stays free for "uncertain" and outlines). Classes take
#: these in order of their id, so the default legend's six classes get six distinct colours.
OKABE_ITO = ("#009e73", "#f0e442", "#e69f00", "#d55e00", "#56b4e9", "#cc79a7", "#0072b2")


def palette_colors(colors: Mapping[int, str], palette: str = DEFAULT_PALETTE) -> dict[int, str]:
    """Class colours in ``palette``: ``colors`` unchanged for the default, Okabe-Ito by class id (cycling
    after seven classes) for the colour-blind-safe one."""
    if palette not in PALETTES:
        raise ValueError(f"unknown palette {palette!r}; choose one of {', '.join(PALETTES)}")
    if palette == DEFAULT_PALETTE:
        return dict(colors)
    return {class_id: OKABE_ITO[i % len(OKABE_ITO)] for i, class_id in enumerate(sorted(colors))}


#: CROPTYPE24 names of temporary crops -> index in CROP_LEGEND.
CROPTYPE24_TO_LEGEND: dict[str, int] = {
    "grass_fodder_crops": 0,
    "no_crop": 0,
    "maize": 1,
    "wheat": 2,
    "barley": 2,
    "triticale": 2,
    "rye": 2,
    "oats": 2,
    "sorghum": 3,
    "millet": 3,
    "sunflower": 4,
    "rapeseed_rape": 4,
    "soy_soybeans": 4,
    "other_oilseed": 4,
    "groundnuts": 4,
    "dry_pulses_legumes": 5,
    "fibre_crops": 5,
    "vegetables": 5,
    "potatoes": 5,
    "cassava": 5,
    "other_root_tuber": 5,
    "sugarbeet": 5,
    "rice": 5,
}
