"""Overlapping tiles over a raster and seamless blending of per-tile predictions.

Tiles are laid row-major with stride ``tile - overlap``; the last tile of a row or column is shifted back
to end at the raster edge, so every tile has the full size when the raster is at least one tile large.
Overlapping predictions are averaged with weights that ramp down towards tile edges (never to zero), so
seams vanish. :class:`RowBlender` accumulates one band of tile rows at a time and hands finished rows to a
callback, so memory holds ``classes x (tile + stride) x width`` values, not the whole raster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cropcore.errors import ConfigError


@dataclass(frozen=True)
class Tile:
    """A window of the raster: offsets and size in pixels."""

    row: int
    col: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


def tile_origins(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis covering ``size`` pixels."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ConfigError(f"need tile > overlap >= 0, got tile={tile}, overlap={overlap}")
    if size <= tile:
        return [0]
    stride = tile - overlap
    origins = list(range(0, size - tile, stride))
    origins.append(size - tile)
    return origins


def plan_tiles(height: int, width: int, *, tile: int, overlap: int) -> list[Tile]:
    """Row-major tiles covering a ``height x width`` raster."""
    rows, cols = tile_origins(height, tile, overlap), tile_origins(width, tile, overlap)
    return [Tile(r, c, min(tile, height), min(tile, width)) for r in rows for c in cols]


def blend_weights(height: int, width: int, overlap: int) -> np.ndarray:
    """Separable weights (height, width): 1 inside, a linear ramp over ``overlap`` pixels at each edge."""
    def ramp(n: int) -> np.ndarray:
        w = np.ones(n, dtype=np.float32)
        k = min(overlap, n // 2)
        if k:
            edge = (np.arange(k, dtype=np.float32) + 0.5) / k
            w[:k] = edge
            w[n - k:] = edge[::-1]
        return w
    return np.outer(ramp(height), ramp(width))


class RowBlender:
    """Blend per-tile arrays (bands, h, w) in row-major tile order; emit finished rows in order.

    ``emit(row0, block)`` receives the blended values of raster rows ``row0 .. row0 + len(block)``.
    """

    def __init__(
        self, bands: int, height: int, width: int, *, tile: int, overlap: int,
        emit: Callable[[int, np.ndarray], None],
    ) -> None:
        self.bands, self.height, self.width = bands, height, width
        self.overlap, self.emit = overlap, emit
        self.tiles = plan_tiles(height, width, tile=tile, overlap=overlap)
        self._starts = sorted({t.row for t in self.tiles})
        self._top = 0  # first raster row not yet emitted
        self._acc = np.zeros((bands, 0, width), dtype=np.float64)
        self._wsum = np.zeros((0, width), dtype=np.float64)
        self._done = 0

    def _grow_to(self, bottom: int) -> None:
        extra = bottom - (self._top + self._wsum.shape[0])
        if extra > 0:
            self._acc = np.concatenate([self._acc, np.zeros((self.bands, extra, self.width))], axis=1)
            self._wsum = np.concatenate([self._wsum, np.zeros((extra, self.width))], axis=0)

    def _flush(self, until: int) -> None:
        n = until - self._top
        if n <= 0:
            return
        block = (self._acc[:, :n] / self._wsum[:n]).astype(np.float32)
        self.emit(self._top, block)
        self._acc, self._wsum = self._acc[:, n:], self._wsum[n:]
        self._top = until

    def add(self, tile: Tile, values: np.ndarray) -> None:
        """Add the prediction for ``tile`` (the next one in :attr:`tiles` order)."""
        expected = self.tiles[self._done]
        if tile != expected:
            raise ValueError(f"tiles must arrive in plan order: expected {expected}, got {tile}")
        if values.shape != (self.bands, tile.height, tile.width):
            raise ValueError(f"tile values have shape {values.shape}, expected {(self.bands, tile.height, tile.width)}")
        self._done += 1
        self._grow_to(tile.row + tile.height)
        w = blend_weights(tile.height, tile.width, self.overlap)
        rs = slice(tile.row - self._top, tile.row - self._top + tile.height)
        cs = slice(tile.col, tile.col + tile.width)
        self._acc[:, rs, cs] += values * w
        self._wsum[rs, cs] += w
        finished_row = self._done == len(self.tiles) or self.tiles[self._done].row != tile.row
        if finished_row:
            later = [s for s in self._starts if s > tile.row]
            self._flush(later[0] if later else self.height)

