"""Overlapping tiles over a raster and seamless blending of per-tile predictions.

Tiles are laid in column strips (:func:`strip_extents`), row-major inside each strip, with stride ``tile -
overlap``; the last tile of a row or column is shifted back to end at the strip's or raster's edge, so every
tile has the full size when the raster is at least one tile large.
Overlapping predictions are averaged with weights that ramp down towards tile edges (never to zero), so
seams vanish, between strips too. :class:`Blender` accumulates one band of tile rows of one strip at a time,
handing finished blocks to a callback, so memory holds ``classes x (tile + stride) x strip``
values (plus the columns shared by neighbouring strips), not the whole raster or a full-width band.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

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


def strip_extents(width: int, *, tile: int, overlap: int, strip: int | None) -> list[tuple[int, int]]:
    """Column ranges ``[x0, x1)`` of the strips tiles are laid in.

    Strip cores are cut every ``strip`` pixels (the last core is widened to at least one tile) and each strip
    but the first reaches ``overlap`` pixels into its left neighbour, so neighbouring strips share exactly
    ``overlap`` columns. ``strip=None`` (or wider than the raster) gives one strip.
    """
    if strip is None or strip >= width:
        return [(0, width)]
    if strip < tile:
        raise ConfigError(f"the strip width ({strip} px) must be at least the tile size ({tile} px)")
    cuts = list(range(strip, width, strip))
    if width - cuts[-1] < tile:
        cuts.pop()
    edges = [0, *cuts, width]
    return [(max(0, a - overlap), b) for a, b in pairwise(edges)]


class Blender:
    """Blend per-tile arrays (bands, h, w) arriving in plan order; emit finished blocks top to bottom, strip by strip.

    Tiles are laid in column strips (:func:`strip_extents`), row-major inside each strip. ``emit(row0, col0,
    block)`` receives the blended values of a block of rows of one strip; every pixel is emitted exactly once.
    Memory holds ``bands x (tile + stride) x strip`` accumulated values plus the ``overlap`` columns shared
    with the next strip over the raster's height, not the whole raster.

    ``skip`` (height, width; True = not to be mapped) leaves out the tiles lying wholly in it: they are not in
    :attr:`run_tiles`, and zeros stand in for their values (:meth:`fill_skipped`), so pixels that only they
    cover come out as zeros and every other pixel as without ``skip``.
    """

    def __init__(
        self, bands: int, height: int, width: int, *, tile: int, overlap: int,
        emit: Callable[[int, int, np.ndarray], None], strip: int | None = None, skip: np.ndarray | None = None,
    ) -> None:
        self.bands, self.height, self.overlap, self.emit = bands, height, overlap, emit
        self.extents = strip_extents(width, tile=tile, overlap=overlap, strip=strip)
        self._starts = tile_origins(height, tile, overlap)
        self.tiles: list[Tile] = []
        self._strip_of: list[int] = []
        for s, (x0, x1) in enumerate(self.extents):
            for r in self._starts:
                for c in tile_origins(x1 - x0, tile, overlap):
                    self.tiles.append(Tile(r, x0 + c, min(tile, height), min(tile, x1 - x0)))
                    self._strip_of.append(s)
        if skip is not None and skip.shape != (height, width):
            raise ConfigError(f"the skip mask has shape {skip.shape}, the raster {(height, width)}")
        self.skipped = {i for i, t in enumerate(self.tiles) if skip is not None and skip[t.slices].all()}
        #: The tiles to run, in plan order (all but the skipped ones).
        self.run_tiles = [t for i, t in enumerate(self.tiles) if i not in self.skipped]
        shared = overlap if len(self.extents) > 1 else 0  # columns shared by neighbouring strips
        self._seam_acc = np.zeros((bands, height, shared))
        self._seam_wsum = np.zeros((height, shared))
        self._done = 0
        self._strip = -1

    def _start_strip(self, s: int) -> None:
        self._strip, self._top = s, 0
        x0, x1 = self.extents[s]
        self._acc = np.zeros((self.bands, 0, x1 - x0))
        self._wsum = np.zeros((0, x1 - x0))

    def _grow_to(self, bottom: int) -> None:
        extra = bottom - (self._top + self._wsum.shape[0])
        if extra > 0:
            width = self._wsum.shape[1]
            self._acc = np.concatenate([self._acc, np.zeros((self.bands, extra, width))], axis=1)
            self._wsum = np.concatenate([self._wsum, np.zeros((extra, width))], axis=0)

    def _flush(self, until: int) -> None:
        n = until - self._top
        if n <= 0:
            return
        acc, wsum = self._acc[:, :n], self._wsum[:n]
        rows = slice(self._top, until)
        shared = self._seam_wsum.shape[1]
        if shared and self._strip > 0:  # columns shared with the previous strip: add what its tiles gave
            acc[:, :, :shared] += self._seam_acc[:, rows]
            wsum[:, :shared] += self._seam_wsum[rows]
        keep = wsum.shape[1]
        if shared and self._strip < len(self.extents) - 1:  # shared with the next strip: keep them for it
            keep -= shared
            self._seam_acc[:, rows] = acc[:, :, keep:]
            self._seam_wsum[rows] = wsum[:, keep:]
        self.emit(self._top, self.extents[self._strip][0], (acc[:, :, :keep] / wsum[:, :keep]).astype(np.float32))
        self._acc, self._wsum = self._acc[:, n:], self._wsum[n:]
        self._top = until

    def add(self, tile: Tile, values: np.ndarray) -> None:
        """Add the prediction for ``tile`` (the next one in :attr:`run_tiles` order)."""
        self._add(tile, values)
        self.fill_skipped()

    def fill_skipped(self) -> None:
        """Add zeros for the skipped tiles next in plan order (call once before the first :meth:`add`)."""
        while self._done < len(self.tiles) and self._done in self.skipped:
            t = self.tiles[self._done]
            self._add(t, np.zeros((self.bands, t.height, t.width), np.float32))

    def _add(self, tile: Tile, values: np.ndarray) -> None:
        expected = self.tiles[self._done]
        if tile != expected:
            raise ValueError(f"tiles must arrive in plan order: expected {expected}, got {tile}")
        if values.shape != (self.bands, tile.height, tile.width):
            raise ValueError(f"tile values have shape {values.shape}, expected {(self.bands, tile.height, tile.width)}")
        strip = self._strip_of[self._done]
        if strip != self._strip:
            self._start_strip(strip)
        self._done += 1
        self._grow_to(tile.row + tile.height)
        w = blend_weights(tile.height, tile.width, self.overlap)
        rs = slice(tile.row - self._top, tile.row - self._top + tile.height)
        x0 = self.extents[strip][0]
        cs = slice(tile.col - x0, tile.col - x0 + tile.width)
        self._acc[:, rs, cs] += values * w
        self._wsum[rs, cs] += w
        last = self._done == len(self.tiles)
        if last or self._strip_of[self._done] != strip or self.tiles[self._done].row != tile.row:
            later = [s for s in self._starts if s > tile.row]
            self._flush(later[0] if later else self.height)

    def strip_start(self, tile: Tile) -> int:
        """First column of the strip ``tile`` lies in."""
        return max(x0 for x0, _ in self.extents if x0 <= tile.col)
