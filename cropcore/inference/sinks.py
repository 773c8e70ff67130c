"""Where :func:`cropcore.inference.predict.predict_map` puts finished blocks of the map.

* :class:`ArraySink` keeps the layers (and optionally every class probability) in memory;
* :class:`GeoTiffSink` writes them window by window into tiled GeoTIFFs on disk, so a map of any size needs
  memory only for the block being written; the files are read back lazily (dask) for export and statistics.

The layers are ``class`` (uint8, :data:`~cropcore.inference.options.UNCERTAIN` below the minimum confidence),
``class_raw`` (the class before that), ``confidence`` (float32) and ``cropland`` (percent, uint8; only for
models with crop classes), as :class:`~cropcore.inference.calibrate.Layers` gives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
import rioxarray
import xarray as xr
from rasterio.windows import Window

from cropcore.inference.calibrate import Layers
from cropcore.inference.options import NODATA

#: Layer name -> (dtype, no-data value).
LAYERS: dict[str, tuple[str, float]] = {"class": ("uint8", NODATA), "class_raw": ("uint8", NODATA),
                                        "confidence": ("float32", np.nan), "cropland": ("uint8", NODATA)}


def _arrays(layers: Layers) -> dict[str, np.ndarray]:
    out = {"class": layers.classes, "class_raw": layers.raw, "confidence": layers.confidence}
    if layers.cropland is not None:
        out["cropland"] = layers.cropland
    return out


class MapSink(Protocol):
    """Receives the layers of finished blocks (each pixel once, in any order)."""

    def write(self, row0: int, col0: int, layers: Layers) -> None:
        """The layers of the block at row ``row0``, column ``col0``."""

    def dataset(self, coords: dict) -> xr.Dataset:
        """The map as a Dataset of its layers (and maybe ``probability``)."""


class ArraySink:
    """The whole map in memory."""

    def __init__(self, height: int, width: int, num_classes: int, *, probabilities: bool = False) -> None:
        self.shape = (height, width)
        self.layers: dict[str, np.ndarray] = {}
        self.probabilities = np.zeros((num_classes, height, width), np.float32) if probabilities else None

    def write(self, row0: int, col0: int, layers: Layers) -> None:
        window = slice(row0, row0 + layers.raw.shape[0]), slice(col0, col0 + layers.raw.shape[1])
        for name, block in _arrays(layers).items():
            if name not in self.layers:
                dtype, nodata = LAYERS[name]
                self.layers[name] = np.full(self.shape, nodata, dtype=dtype)
            self.layers[name][window] = block
        if self.probabilities is not None and layers.probabilities is not None:
            self.probabilities[(slice(None), *window)] = layers.probabilities

    def dataset(self, coords: dict) -> xr.Dataset:
        out = xr.Dataset({k: (("y", "x"), v) for k, v in self.layers.items()}, coords=coords)
        if self.probabilities is not None:
            out["probability"] = (("class_id", "y", "x"), self.probabilities)
        return out


class GeoTiffSink:
    """Blocks written into ``<folder>/<layer>.tif`` (tiled, uncompressed), one file per layer."""

    def __init__(self, folder: Path, *, crs: object, transform: object, height: int, width: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.paths: dict[str, Path] = {}
        self._common = {"driver": "GTiff", "height": height, "width": width, "count": 1, "crs": crs,
                        "transform": transform, "tiled": True, "blockxsize": 256, "blockysize": 256}
        self._files: dict[str, rasterio.io.DatasetWriter] = {}

    def write(self, row0: int, col0: int, layers: Layers) -> None:
        window = Window(col0, row0, layers.raw.shape[1], layers.raw.shape[0])
        for name, block in _arrays(layers).items():
            if name not in self._files:
                dtype, nodata = LAYERS[name]
                self.paths[name] = self.folder / f"{name}.tif"
                self._files[name] = rasterio.open(self.paths[name], "w", dtype=dtype, nodata=nodata, **self._common)
            self._files[name].write(block, 1, window=window)

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def dataset(self, coords: dict) -> xr.Dataset:
        """Close the files and open them again lazily (dask chunks of 1024 x 1024 px)."""
        self.close()
        layers = {k: rioxarray.open_rasterio(p, chunks={"x": 1024, "y": 1024}, mask_and_scale=False).squeeze(
            "band", drop=True) for k, p in self.paths.items()}
        return xr.Dataset(layers)
