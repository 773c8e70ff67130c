"""BigEarthNet-style patch collections in memory: :class:`PatchSet` from the npz or from per-band GeoTIFF folders.

Reflectance is ``DN / 10000`` (float32), bands in :data:`BANDS` order, every band at 120 x 120: the 20 m and
60 m bands are upsampled by nearest neighbour (each pixel repeated 2 x 2 or 6 x 6), as in the npz.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cropcore.errors import DatasetFormatError
from cropcore.settings import data_dir

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
SIZE = 120
SCALE = 10000.0
#: Where the sample collection lies under the data directory (``cropcore.settings.data_dir``).
NPZ = "bigearthnet/ben_real_s2_patches.npz"
FOLDERS = "bigearthnet/BigEarthNet-S2-Example"
#: The 19-class nomenclature (Sumbul et al. 2021) and which of its classes are agricultural (CORINE 2.x).
CLASSES19 = (
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland and sparsely vegetated areas", "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub", "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands",
    "Inland waters", "Marine waters",
)
AGRI19 = (2, 3, 4, 5, 6, 7)
#: The original 43 CORINE labels that map to each 19-class label (those that map to none are dropped).
_CLC43_TO_19 = {
    "Continuous urban fabric": 0, "Discontinuous urban fabric": 0, "Industrial or commercial units": 1,
    "Non-irrigated arable land": 2, "Permanently irrigated land": 2, "Rice fields": 2, "Vineyards": 3,
    "Fruit trees and berry plantations": 3, "Olive groves": 3, "Annual crops associated with permanent crops": 3,
    "Pastures": 4, "Complex cultivation patterns": 5,
    "Land principally occupied by agriculture, with significant areas of natural vegetation": 6,
    "Agro-forestry areas": 7, "Broad-leaved forest": 8, "Coniferous forest": 9, "Mixed forest": 10,
    "Natural grassland": 11, "Sparsely vegetated areas": 11, "Moors and heathland": 12,
    "Sclerophyllous vegetation": 12, "Transitional woodland/shrub": 13, "Beaches, dunes, sands": 14,
    "Inland marshes": 15, "Peatbogs": 15, "Salt marshes": 16, "Salines": 16, "Water courses": 17,
    "Water bodies": 17, "Coastal lagoons": 18, "Estuaries": 18, "Sea and ocean": 18,
}


@dataclass(frozen=True)
class PatchSet:
    """Patches ``x`` (N, 12, 120, 120) float32 reflectance, multi-hot ``y19`` (N, 19), ``agri`` (N,) and names."""

    x: np.ndarray
    y19: np.ndarray
    names: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.x)
        if self.x.ndim != 4 or self.x.shape[1] != len(BANDS) or self.y19.shape != (n, len(CLASSES19)) \
                or len(self.names) != n:
            raise DatasetFormatError(f"inconsistent patch set: x {self.x.shape}, y19 {self.y19.shape}, "
                                     f"{len(self.names)} names; expected (N, 12, H, W), (N, 19), N")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def agri(self) -> np.ndarray:
        """1 where any agricultural class (:data:`AGRI19`) is present."""
        return self.y19[:, list(AGRI19)].any(1).astype(np.float32)

    def subset(self, index: np.ndarray) -> PatchSet:
        """The patches at ``index`` (integer positions or a boolean mask)."""
        return PatchSet(self.x[index], self.y19[index], self.names[index])


def labels_to_y19(labels: list[str]) -> np.ndarray:
    """Multi-hot (19,) of CORINE labels (43-class names, or 19-class names as BigEarthNet v2 writes them)."""
    y = np.zeros(len(CLASSES19), np.float32)
    for label in labels:
        if label in CLASSES19:
            y[CLASSES19.index(label)] = 1
        elif label in _CLC43_TO_19:
            y[_CLC43_TO_19[label]] = 1
    return y


def read_npz(path: str | Path | None = None) -> PatchSet:
    """The npz collection (default: :data:`NPZ` under the data directory); checks its band order and classes."""
    path = Path(path) if path is not None else data_dir(NPZ) / NPZ
    if not path.is_file():
        raise DatasetFormatError(f"no patch npz at {path}")
    with np.load(path, allow_pickle=False) as z:
        missing = {"X", "bands", "names", "Y19", "classes19"} - set(z.files)
        if missing:
            raise DatasetFormatError(f"{path} lacks {sorted(missing)}; expected X, bands, names, Y19, classes19")
        if tuple(z["bands"]) != BANDS or tuple(z["classes19"]) != CLASSES19:
            raise DatasetFormatError(f"{path}: bands {list(z['bands'])} or classes differ from the expected "
                                     f"{list(BANDS)} and the BigEarthNet 19-class nomenclature")
        return PatchSet(z["X"].astype(np.float32) / SCALE, z["Y19"].astype(np.float32), z["names"].astype(str))


def read_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One BigEarthNet patch folder (``<name>_<band>.tif`` per band + ``<name>_labels_metadata.json``):
    reflectance (12, 120, 120) and the multi-hot (19,)."""
    import rasterio

    folder = Path(folder)
    bands = []
    for band in BANDS:
        tif = folder / f"{folder.name}_{band}.tif"
        if not tif.is_file():
            raise DatasetFormatError(f"{folder} has no {tif.name}; a BigEarthNet patch folder holds one GeoTIFF "
                                     f"per band ({', '.join(BANDS)})")
        with rasterio.open(tif) as src:
            data = src.read(1)
        if SIZE % data.shape[0] or data.shape[0] != data.shape[1]:
            raise DatasetFormatError(f"{tif} is {data.shape[0]} x {data.shape[1]}; expected a square that "
                                     f"divides {SIZE}")
        factor = SIZE // data.shape[0]
        bands.append(np.repeat(np.repeat(data, factor, 0), factor, 1))  # nearest neighbour, as the npz
    meta = folder / f"{folder.name}_labels_metadata.json"
    if not meta.is_file():
        raise DatasetFormatError(f"{folder} has no {meta.name}")
    labels = json.loads(meta.read_text()).get("labels", [])
    return np.stack(bands).astype(np.float32) / SCALE, labels_to_y19(labels)


def read_folders(root: str | Path | None = None) -> PatchSet:
    """Every patch folder under ``root`` (default: :data:`FOLDERS` under the data directory), sorted by name."""
    root = Path(root) if root is not None else data_dir(FOLDERS) / FOLDERS
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DatasetFormatError(f"no BigEarthNet patch folders under {root}")
    pairs = [read_folder(f) for f in folders]
    return PatchSet(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]),
                    np.array([f.name for f in folders]))


def read_source(source: str | Path) -> PatchSet:
    """An npz file or a folder of patch folders; relative paths are under the data directory."""
    path = Path(source)
    if not path.is_absolute():
        path = data_dir(str(source)) / path
    return read_folders(path) if path.is_dir() else read_npz(path)
