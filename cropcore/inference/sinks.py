"""Where :func:`cropcore.inference.predict.predict_map` puts finished blocks of the map.

* :class:`ArraySink` keeps the class map, the confidence (and optionally every class probability) in memory;
* :class:`GeoTiffSink` writes them window by window into tiled GeoTIFFs on disk, so a map of any size needs
  memory only for the block being written; the files are read back lazily (dask) for export and statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
import rioxarray
import xarray as xr
from rasterio.windows import Window

from cropcore.inference.options import NODATA


class MapSink(Protocol):
    """Receives blended class probabilities of finished blocks (each pixel once, in any order)."""

    def write(self, row0: int, col0: int, probabilities: np.ndarray, valid: np.ndarray) -> None:
        """``probabilities`` (K, n, m) and ``valid`` (n, m) for the block at row ``row0``, column ``col0``."""

    def dataset(self, coords: dict) -> xr.Dataset:
        """The map as a Dataset with ``class`` and ``confidence`` (and maybe ``probability``)."""


def _class_and_confidence(p: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes = p.argmax(0).astype(np.uint8)
    confidence = p.max(0).astype(np.float32)
    classes[~valid] = NODATA
    confidence[~valid] = np.nan
    return classes, confidence


class ArraySink:
    """The whole map in memory."""

    def __init__(self, height: int, width: int, num_classes: int, *, probabilities: bool = False) -> None:
        self.classes = np.full((height, width), NODATA, dtype=np.uint8)
        self.confidence = np.full((height, width), np.nan, dtype=np.float32)
        self.probabilities = np.zeros((num_classes, height, width), np.float32) if probabilities else None

    def write(self, row0: int, col0: int, probabilities: np.ndarray, valid: np.ndarray) -> None:
        window = slice(row0, row0 + probabilities.shape[1]), slice(col0, col0 + probabilities.shape[2])
        self.classes[window], self.confidence[window] = _class_and_confidence(probabilities, valid)
        if self.probabilities is not None:
            self.probabilities[(slice(None), *window)] = probabilities

    def dataset(self, coords: dict) -> xr.Dataset:
        out = xr.Dataset({"class": (("y", "x"), self.classes), "confidence": (("y", "x"), self.confidence)},
                         coords=coords)
        if self.probabilities is not None:
            out["probability"] = (("class_id", "y", "x"), self.probabilities)
        return out


class GeoTiffSink:
    """Blocks written into ``<folder>/class.tif`` and ``<folder>/confidence.tif`` (tiled, uncompressed)."""

    def __init__(self, folder: Path, *, crs: object, transform: object, height: int, width: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = {"class": folder / "class.tif", "confidence": folder / "confidence.tif"}
        common = {"driver": "GTiff", "height": height, "width": width, "count": 1, "crs": crs,
                  "transform": transform, "tiled": True, "blockxsize": 256, "blockysize": 256}
        self._files = {
            "class": rasterio.open(self.paths["class"], "w", dtype="uint8", nodata=NODATA, **common),
            "confidence": rasterio.open(self.paths["confidence"], "w", dtype="float32", nodata=np.nan, **common),
        }

    def write(self, row0: int, col0: int, probabilities: np.ndarray, valid: np.ndarray) -> None:
        classes, confidence = _class_and_confidence(probabilities, valid)
        window = Window(col0, row0, classes.shape[1], classes.shape[0])
        self._files["class"].write(classes, 1, window=window)
        self._files["confidence"].write(confidence, 1, window=window)

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def dataset(self, coords: dict) -> xr.Dataset:
        """Close the files and open them again lazily (dask chunks of 1024 x 1024 px)."""
        self.close()
        layers = {k: rioxarray.open_rasterio(p, chunks={"x": 1024, "y": 1024}, mask_and_scale=False).squeeze(
            "band", drop=True) for k, p in self.paths.items()}
        return xr.Dataset(layers)
