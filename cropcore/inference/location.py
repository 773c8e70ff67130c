"""Where each pixel is on Earth, for models that take location (``uses_location`` in the model registry)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import rioxarray  # noqa: F401 (registers .rio)
import xarray as xr
from pyproj import Transformer

from cropcore.errors import ConfigError
from cropcore.inference.tiling import Tile


class Locator:
    """Latitude and longitude in degrees of every pixel centre of a cube's grid, tile by tile.

    Each pixel gets its own location (not its tile's centre), so a map does not depend on how it was tiled.
    """

    def __init__(self, cube: xr.DataArray) -> None:
        crs = cube.rio.crs
        if crs is None:
            raise ConfigError("the cube has no CRS, so the location its model needs is unknown")
        self.x, self.y = np.asarray(cube["x"].values), np.asarray(cube["y"].values)
        self.to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def tile(self, tile: Tile) -> np.ndarray:
        """(h, w, 2) float32 ``(lat, lon)`` of the tile's pixels."""
        rows, cols = tile.slices
        xx, yy = np.meshgrid(self.x[cols], self.y[rows])
        lon, lat = self.to_lonlat.transform(xx, yy)
        return np.stack([lat, lon], axis=-1).astype(np.float32)

    def batch(self, tiles: Sequence[Tile]) -> np.ndarray:
        """(B, h, w, 2) ``(lat, lon)`` of a batch of equal-sized tiles."""
        return np.stack([self.tile(t) for t in tiles])
