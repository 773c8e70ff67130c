"""Model-ready windows of a lazy cube, each dask chunk computed once (:class:`WindowReader`).

Given a :class:`~cropcore.cube.preprocess.ChunkPlan`, the cube holds DNs and each chunk, once decoded on the CPU, is
composited, gap-filled and normalised on a torch device (:func:`~cropcore.cube.preprocess.preprocess_tensor`), on a
CUDA stream of its own so that it overlaps the model; :func:`read_batches` reads ahead in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import dask.array as da
import numpy as np
import xarray as xr

from cropcore.cube.dask_setup import compute
from cropcore.cube.normalise import NormStats
from cropcore.cube.preprocess import ChunkPlan, preprocess_tensor
from cropcore.inference.tiling import Blender, Tile


class WindowReader:
    """Model-ready windows of a ``(time, band, y, x)`` cube; each dask chunk is computed once while tiles need it.

    Tiles arrive strip by strip (see :class:`~cropcore.inference.tiling.Blender`), row-major inside a strip. A chunk is
    computed when a window first needs it and dropped by :meth:`release` once reading has passed it; of each
    chunk the last ``halo`` columns are kept until the next strip, which starts that far inside it. Memory
    holds about two chunk rows of one strip plus those columns, whatever the AOI's size.

    Values are float32, normalised with ``norm`` when given (missing values, NaN, then become 0: the band
    mean); :attr:`valid` marks the pixels read so far that hold a value in some date and band. With ``plan`` the
    cube holds DNs (loaded, SCL included) and each chunk is preprocessed by that plan on ``device`` (normalised there
    too); windows then have the plan's bins and bands.
    """

    def __init__(self, cube: xr.DataArray, *, halo: int = 0, norm: NormStats | None = None,
                 plan: ChunkPlan | None = None, device: str = "cpu") -> None:
        data = da.asarray(cube.data) if plan is not None else cube.data
        self.plan, self.device, self.stream = plan, device, None
        if plan is not None and device.startswith("cuda"):
            import torch

            self.stream = torch.cuda.Stream(device)
        self.lazy = isinstance(data, da.Array)
        if self.lazy:
            data = data.rechunk({0: -1, 1: -1})
            self.ybounds = np.cumsum((0, *data.chunks[2]))
            self.xbounds = np.cumsum((0, *data.chunks[3]))
        self.data, self.halo_px, self.norm = data, halo, norm
        self.valid = np.zeros(cube.shape[2:], dtype=bool)
        self.cache: dict[tuple[int, int], np.ndarray] = {}
        self.halo: dict[tuple[int, int], np.ndarray] = {}  # last ``halo`` columns of computed chunks

    def _prepare(self, values: np.ndarray, ys: slice, xs: slice) -> np.ndarray:
        """Mark valid pixels of the window ``ys, xs`` and normalise ``values`` (a float32 array we own) in place."""
        missing = np.isnan(values)
        self.valid[ys, xs] |= ~missing.all(axis=(0, 1))
        if self.norm is not None:
            self.norm.scale(values, band_axis=1, inplace=True)
            np.copyto(values, 0, where=missing)
        return values

    def _on_device(self, dn: np.ndarray, ys: slice, xs: slice) -> np.ndarray:
        """A chunk of DNs preprocessed (and normalised) on the device: the float32 window ``ys, xs`` on the host."""
        import torch

        with torch.inference_mode(), torch.cuda.stream(self.stream) if self.stream is not None else nullcontext():
            values = preprocess_tensor(torch.from_numpy(np.ascontiguousarray(dn)).to(self.device), self.plan)
            missing = values.isnan()
            valid = (~missing.all(dim=1).all(dim=0)).cpu().numpy()
            if self.norm is not None:
                self.norm.scale(values, band_axis=1, inplace=True).masked_fill_(missing, 0)
            host = values.cpu().numpy()
        self.valid[ys, xs] |= valid
        return host

    def _chunk(self, value: np.ndarray, ys: slice, xs: slice) -> np.ndarray:
        """A computed chunk as model input (float32 we own)."""
        if self.plan is not None:
            return self._on_device(value, ys, xs)
        return self._prepare(np.array(value, dtype=np.float32), ys, xs)

    def _blocks(self, bounds: np.ndarray, lo: int, hi: int) -> range:
        return range(int(np.searchsorted(bounds, lo, side="right")) - 1, int(np.searchsorted(bounds, hi, side="left")))

    def _piece(self, i: int, j: int, xs: slice) -> tuple[np.ndarray, int] | None:
        """Chunk ``(i, j)`` or its kept right columns (if they hold ``xs``), with its first column."""
        if (i, j) in self.cache:
            return self.cache[i, j], int(self.xbounds[j])
        kept = self.halo.get((i, j))
        if kept is not None and xs.start >= self.xbounds[j + 1] - kept.shape[3]:
            return kept, int(self.xbounds[j + 1]) - kept.shape[3]
        return None

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """The window ``[:, :, ys, xs]``."""
        if not self.lazy:
            return self._prepare(np.array(self.data[:, :, ys, xs], dtype=np.float32), ys, xs)
        iys, ixs = self._blocks(self.ybounds, ys.start, ys.stop), self._blocks(self.xbounds, xs.start, xs.stop)
        missing = [(i, j) for i in iys for j in ixs if self._piece(i, j, xs) is None]
        if missing:  # one graph traversal for all chunks this window lacks
            arrays = compute(*[self.data.blocks[:, :, i, j] for i, j in missing])
            for (i, j), value in zip(missing, arrays, strict=True):
                window = slice(*self.ybounds[i:i + 2]), slice(*self.xbounds[j:j + 2])
                self.cache[i, j] = self._chunk(value, *window)
                if self.halo_px and j < len(self.xbounds) - 2:
                    self.halo[i, j] = self.cache[i, j][..., -self.halo_px:].copy()
        rows = []
        for i in iys:
            y0, y1 = int(self.ybounds[i]), int(self.ybounds[i + 1])
            rs = slice(max(ys.start, y0) - y0, min(ys.stop, y1) - y0)
            pieces = []
            for j in ixs:
                piece, x0 = self._piece(i, j, xs)  # type: ignore[misc]  # computed above
                pieces.append(piece[:, :, rs, max(xs.start, x0) - x0:min(xs.stop, x0 + piece.shape[3]) - x0])
            rows.append(pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=3))
        return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=2)

    def release(self, row: int, col: int) -> None:
        """Reading continues at ``row`` of the strip starting at ``col``: forget chunks no longer needed."""
        if not self.lazy:
            return
        for key in list(self.cache):
            i, j = key
            if self.ybounds[i + 1] <= row or self.xbounds[j + 1] <= col + self.halo_px:
                del self.cache[key]
        for key in list(self.halo):
            i, j = key
            if self.xbounds[j + 1] <= col or (self.ybounds[i + 1] <= row and self.xbounds[j + 1] <= col + self.halo_px):
                del self.halo[key]


def read_batches(
    reader: WindowReader, batches: list[list[Tile]], blender: Blender, ahead: int
) -> Iterator[np.ndarray]:
    """(B, T, C, h, w) arrays from ``reader``, read by a thread that stays ``ahead`` batches ahead (``ahead=0``:
    read in the caller's thread, between model calls)."""

    def read(batch: list[Tile]) -> np.ndarray:
        arrays = []
        for t in batch:
            reader.release(t.row, blender.strip_start(t))
            arrays.append(reader.read(*t.slices))
        return np.stack(arrays)

    if ahead == 0:
        yield from map(read, batches)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(read, b) for b in batches[:ahead]]
        for i in range(len(batches)):
            if i + ahead < len(batches):
                pending.append(pool.submit(read, batches[i + ahead]))
            yield pending[i].result()
            pending[i] = None  # type: ignore[call-overload]  # free the batch
