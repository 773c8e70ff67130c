"""Pure preprocessing of Sentinel-2 cubes: reflectance, SCL masks, composites, gap filling.

Every function takes and returns xarray/numpy objects and stays lazy on dask-backed input. Cubes have dims
``(time, band, y, x)`` as made by :func:`cropcore.cube.load.load_cube`; :func:`preprocess` chains the steps
into the model input: composited, gap-filled reflectance on a regular time axis, fused into one numba pass over
each chunk; :func:`preprocess_tensor` runs the same chain with torch on a device (:func:`plan_chunks`). Spectral
indices are in :mod:`cropcore.cube.indices`, model-input normalisation in :mod:`cropcore.cube.normalise`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import dask.array as dska
import numba
import numpy as np
import pandas as pd
import xarray as xr

from cropcore.errors import ConfigError
from cropcore.legend import SCL_INVALID

if TYPE_CHECKING:
    import torch

#: Digital numbers that mean "no data" in Sentinel-2 L2A products, whatever the asset metadata says.
S2_NODATA: tuple[int, ...] = (0, 65535)
#: Coordinates of a loaded cube that say how to read its DNs, per ``(time, band)`` (see
#: :func:`to_reflectance`); they do not describe reflectance and are dropped with the conversion.
RADIOMETRY_COORDS: tuple[str, ...] = ("scale", "offset", "nodata")


# --- per-pixel kernels ----------------------------------------------------------------------------------
# Compiled with numba, without the GIL (dask threads run chunks side by side): every pixel's series is read once,
# converted, composited and filled in registers, with no whole-array temporaries. Sums of two float32 and
# interpolation weights are taken in float64 scalars, as the reference formulas state.

@numba.njit(nogil=True, cache=True)
def _median(series: np.ndarray, k: int, rows: np.ndarray, lo: int, hi: int, buf: np.ndarray) -> tuple[float, int]:
    """Median of the non-NaN ``series[rows[lo:hi], k]`` (the mean of the two middle ones in float64) and their
    count."""
    n = 0
    for i in range(lo, hi):
        v = series[rows[i], k]
        if not np.isnan(v):
            m = n
            while m > 0 and buf[m - 1] > v:  # insertion sort: bins hold a few values
                buf[m] = buf[m - 1]
                m -= 1
            buf[m] = v
            n += 1
    if n == 0:
        return np.nan, 0
    return (np.float64(buf[(n - 1) // 2]) + np.float64(buf[n // 2])) / 2, n


@numba.njit(nogil=True, cache=True)
def _fill(series: np.ndarray, pos: np.ndarray, nearest: bool, out: np.ndarray) -> None:
    """``series`` with NaN filled by linear interpolation at ``pos`` (float64), into ``out``."""
    n = len(series)
    prev, nxt = -1, -1
    for i in range(n):
        v = series[i]
        if not np.isnan(v):
            out[i] = v
            prev = i
            continue
        if nxt < i:
            nxt = i + 1
            while nxt < n and np.isnan(series[nxt]):
                nxt += 1
        if prev >= 0 and nxt < n:
            t0, t1 = pos[prev], pos[nxt]
            w = (pos[i] - t0) / (t1 - t0) if t1 > t0 else 0.0
            step = (np.float64(series[nxt]) - np.float64(series[prev])) * w
            out[i] = step + np.float64(series[prev])
        elif nearest and prev >= 0:
            out[i] = series[prev]
        elif nearest and nxt < n:
            out[i] = series[nxt]
        else:
            out[i] = np.nan


@numba.njit(nogil=True, cache=True)
def _composite_kernel(values: np.ndarray, order: np.ndarray, starts: np.ndarray, median: np.ndarray,
                      count: np.ndarray) -> None:
    """Per bin ``b`` (rows ``order[starts[b]:starts[b + 1]]``) of ``values`` (T, P): median and count (nbins, P)."""
    buf = np.empty(values.shape[0], values.dtype)
    for p in range(values.shape[1]):
        for b in range(len(starts) - 1):
            median[b, p], count[b, p] = _median(values, p, order, starts[b], starts[b + 1], buf)


@numba.njit(nogil=True, cache=True)
def _fill_kernel(values: np.ndarray, pos: np.ndarray, nearest: bool, out: np.ndarray) -> None:
    """:func:`_fill` of every column of ``values`` (T, P) into ``out``."""
    for p in range(values.shape[1]):
        _fill(values[:, p], pos, nearest, out[:, p])


@numba.njit(nogil=True, cache=True)
def _reflectance_row(dn: np.ndarray, bad: np.ndarray, rad: tuple, t: int, j: int, nodata: np.ndarray,
                     out: np.ndarray) -> None:
    """Reflectance of DNs ``dn`` of time ``t`` and band ``j`` into ``out``, NaN for no-data and where ``bad`` (empty:
    nowhere); ``rad``: see :class:`_Radiometry`."""
    step, scale, offset = rad.step[t, j], rad.scale[t, j], rad.offset[t, j]
    exact, band_nodata = rad.exact[t, j], rad.nodata[t, j]
    masked = len(bad) > 0
    for p in range(len(dn)):
        d = dn[p]
        x = np.float32(d)
        r = (x + step) * scale if exact else x * scale + offset
        out[p] = np.float32(np.nan) if d == band_nodata or (masked and bad[p]) else r
    for value in nodata:  # a pass per value: the loops above and below stay vectorised
        for p in range(len(dn)):
            if dn[p] == value:
                out[p] = np.nan


@numba.njit(nogil=True, cache=True)
def _reflectance_kernel(dn: np.ndarray, bad: np.ndarray, rad: tuple, nodata: np.ndarray, out: np.ndarray) -> None:
    """Reflectance of ``dn`` (T, B, P) into ``out``, NaN where ``bad`` (T, P; (T, 0): nowhere) or no-data."""
    for t in range(dn.shape[0]):
        for j in range(dn.shape[1]):
            _reflectance_row(dn[t, j], bad[t], rad, t, j, nodata, out[t, j])


#: Pixels converted together by :func:`_preprocess_kernel` (their series stay in the CPU's cache).
_BLOCK = 256


@numba.njit(nogil=True, cache=True)
def _block_medians(values: np.ndarray, npx: int, order: np.ndarray, starts: np.ndarray, buf: np.ndarray,
                   median: np.ndarray) -> None:
    """:func:`_median` of the first ``npx`` columns of ``values`` (T, n) per bin into ``median`` (nbins, n); bins of
    one or two rows, the usual ones, pixel after pixel without branches on the values."""
    for b in range(len(starts) - 1):
        lo, hi = starts[b], starts[b + 1]
        if hi - lo == 0:
            median[b, :npx] = np.nan
        elif hi - lo == 1:
            median[b, :npx] = values[order[lo], :npx]
        elif hi - lo == 2:
            first, second = values[order[lo]], values[order[lo + 1]]
            for k in range(npx):
                x, y = first[k], second[k]
                x = y if np.isnan(x) else x
                y = x if np.isnan(y) else y  # the valid one twice, or NaN twice
                median[b, k] = (np.float64(min(x, y)) + np.float64(max(x, y))) / 2
        else:
            for k in range(npx):
                median[b, k] = _median(values, k, order, lo, hi, buf)[0]


@numba.njit(nogil=True, cache=True)
def _preprocess_kernel(dn: list, bad: np.ndarray, rad: tuple, nodata: np.ndarray, order: np.ndarray,
                       starts: np.ndarray, pos: np.ndarray, nearest: bool, out: np.ndarray) -> None:
    """Reflectance, mask, median per bin and gap filling of each pixel's series of ``dn`` (T arrays (B, P)) into ``out``
    (nbins, B, P), ``_BLOCK`` pixels at a time; ``bad`` (T, P; (T, 0): nowhere) masks observations."""
    nbins, nbands, npx = len(starts) - 1, dn[0].shape[0], dn[0].shape[1]
    refl = np.full((len(dn), _BLOCK), np.float32(np.nan))
    median, filled = np.empty((nbins, _BLOCK), np.float32), np.empty((nbins, _BLOCK), np.float32)
    buf = np.empty(len(dn), np.float32)
    for j in range(nbands):
        for p0 in range(0, npx, _BLOCK):
            p1 = min(p0 + _BLOCK, npx)
            for t in order:
                _reflectance_row(dn[t][j, p0:p1], bad[t, p0:p1], rad, t, j, nodata, refl[t, :p1 - p0])
            _block_medians(refl, p1 - p0, order, starts, buf, median)
            for k in range(p1 - p0):
                _fill(median[:, k], pos, nearest, filled[:, k])
            out[:, j, p0:p1] = filled[:, :p1 - p0]


# --- reflectance and masks -------------------------------------------------------------------------------

class _Radiometry(NamedTuple):
    """How to read the DNs of each ``(time, band)``: ``(DN + step) * scale`` where ``exact``, else
    ``DN * scale + offset`` (float32), and each band's no-data DN (NaN: none)."""

    step: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    exact: np.ndarray
    nodata: np.ndarray


def _radiometry(cube: xr.DataArray) -> _Radiometry:
    """The :class:`_Radiometry` of a ``(time, band, ...)`` cube from its coordinates, as ``(time, band)`` arrays.

    Where the offset is a whole number of DNs and the DNs are integers of 16 bits or less, float32 arithmetic gives
    the float64 result of ``(DN + offset / scale) * scale``: the sum is an integer below 2**24, so exact, and its
    product with the float32 scale has at most 48 significant bits, so is rounded only once.
    """
    missing = [c for c in ("scale", "offset") if c not in cube.coords]
    if missing:
        raise ConfigError(f"the cube has no {' or '.join(missing)} coordinate, so its DNs cannot be read as "
                          "reflectance: load it with load_cube, or assign_coords(scale=..., offset=...) so that "
                          "reflectance = DN * scale + offset")
    grid = xr.DataArray(np.zeros(cube.shape[:2]), dims=cube.dims[:2], coords={d: cube[d] for d in cube.dims[:2]})

    def table(name: str, default: float = np.nan) -> np.ndarray:
        coord = cube.coords[name] if name in cube.coords else xr.DataArray(default)
        coord = coord.drop_vars([c for c in coord.coords if c not in grid.dims])
        return xr.broadcast(coord, grid)[0].transpose(*grid.dims).values.astype("float64")

    scale, offset = table("scale"), table("offset")
    with np.errstate(invalid="ignore", divide="ignore"):
        offset_dn = offset / scale  # the offset in DN: -1000 for -0.1 at scale 1e-4
    known = np.isfinite(offset_dn)  # NaN where no item had the band: its reflectance is NaN
    step = np.round(np.where(known, offset_dn, 0))
    exact = (cube.dtype.kind in "ui" and cube.dtype.itemsize <= 2) & (abs(np.where(known, offset_dn, 0) - step) < 1e-6)
    exact &= abs(step) < 2**23
    f32 = [np.ascontiguousarray(a, dtype="float32") for a in (step, scale, offset)]
    return _Radiometry(*f32, np.ascontiguousarray(exact), np.ascontiguousarray(table("nodata")))


def _flat(a: np.ndarray, lead: int) -> np.ndarray:
    """``a`` as a C-contiguous array of its ``lead`` leading axes and one of all the others."""
    return np.ascontiguousarray(a).reshape(*a.shape[:lead], -1)


def _bad_2d(bad: np.ndarray | None, ntime: int) -> np.ndarray:
    """A (T, y, x) mask as (T, P), or (T, 0) for none."""
    return np.zeros((ntime, 0), bool) if bad is None else _flat(bad.astype(bool, copy=False), 1)


def _reflectance_block(dn: np.ndarray, bad: np.ndarray | None, *rad: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    out = np.empty(dn.shape, "float32")
    _reflectance_kernel(_flat(dn, 2), _bad_2d(bad, len(dn)), _Radiometry(*rad), nodata, out.reshape(*dn.shape[:2], -1))
    return out


def _blockwise(
    block: Callable[..., np.ndarray], cube: xr.DataArray, bad: xr.DataArray | None, rad: _Radiometry,
    ntime: int | None = None, **kwargs: object,
) -> np.ndarray | dska.Array:
    """``block(dn, bad, *rad, **kwargs)`` over a ``(time, band, y, x)`` cube (``bad``: a (time, y, x) mask or None),
    per dask chunk for a lazy one. With ``ntime`` the block makes ``ntime`` steps out of the whole time axis, and gets
    lists: of the cube's time chunks in ``dn`` and ``bad``, of one whole table in each of ``rad``."""
    data = cube.data
    mask = None if bad is None else bad.transpose("time", "y", "x").data
    if not isinstance(data, dska.Array) and not isinstance(mask, dska.Array):
        if ntime is None:
            return block(data, mask, *rad, **kwargs)
        return block([data], None if mask is None else [mask], *([a] for a in rad), **kwargs)
    data = dska.asarray(data)
    mask = None if mask is None else dska.asarray(mask).rechunk((data.chunks[0], *data.chunks[2:]))
    if ntime is None:  # block by block
        index, mask_index, table_index, out = "tbyx", "tyx", "tb", {}
        tables = [dska.from_array(a, chunks=data.chunks[:2]) for a in rad]
    else:  # the time chunks of each block in a list, not concatenated: no copy
        index, mask_index, table_index, out = "sbyx", "syx", "ub", {"new_axes": {"t": ntime}, "concatenate": False}
        tables = [dska.from_array(a, chunks=((len(a),), data.chunks[1])) for a in rad]
    pairs = [(data, index), (None, None) if mask is None else (mask, mask_index), *((a, table_index) for a in tables)]
    return dska.blockwise(block, "tbyx", *[x for pair in pairs for x in pair], dtype="float32",
                          meta=np.empty((0, 0, 0, 0), "float32"), **out, **kwargs)


def to_reflectance(cube: xr.DataArray, *, nodata: Sequence[float] = S2_NODATA) -> xr.DataArray:
    """Digital numbers -> float32 reflectance ``DN * scale + offset``, no-data -> NaN.

    ``scale`` and ``offset`` are the cube's coordinates of those names (per ``(time, band)`` as
    :func:`cropcore.cube.load.load_cube` sets them from each item's metadata, or broadcastable to it). No-data
    are the values in ``nodata`` and the cube's ``nodata`` coordinate, if any. Reflectance below 0 (dark pixels
    after the offset) is kept.
    """
    ordered = cube.transpose("time", "band", "y", "x")
    data = _blockwise(_reflectance_block, ordered, None, _radiometry(ordered), nodata=np.asarray(nodata, "float64"))
    out = xr.DataArray(data, dims=ordered.dims, coords=ordered.coords, attrs={"units": "reflectance"}).rename(None)
    return out.drop_vars([c for c in RADIOMETRY_COORDS if c in out.coords]).transpose(*cube.dims)


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow ``True`` regions of a boolean array by ``pixels`` along its last two axes (square element)."""
    if pixels < 0:
        raise ConfigError(f"dilation is a number of pixels >= 0, got {pixels}")
    out = np.asarray(mask, dtype=bool)
    for axis in (-2, -1):
        grown = out.copy()
        n = out.shape[axis]
        for shift in range(1, min(pixels, n - 1) + 1):
            lead = [slice(None)] * out.ndim
            trail = [slice(None)] * out.ndim
            lead[axis], trail[axis] = slice(shift, None), slice(None, n - shift)
            grown[tuple(lead)] |= out[tuple(trail)]
            grown[tuple(trail)] |= out[tuple(lead)]
        out = grown
    return out


def invalid_scl(
    scl: xr.DataArray, *, invalid: Sequence[int] = SCL_INVALID, dilation: int = 0,
) -> xr.DataArray:
    """Boolean mask (True = unusable) from a Scene Classification layer, dilated by ``dilation`` pixels.

    Missing SCL values (NaN) count as invalid.
    """
    bad = xr.apply_ufunc(lambda v: np.isin(v, invalid) | np.isnan(v), scl, dask="parallelized",
                         output_dtypes=[bool])
    if dilation <= 0:
        return bad
    data = bad.data
    if isinstance(data, dska.Array):
        depth = {i: 0 for i in range(data.ndim)}
        depth[data.ndim - 2] = depth[data.ndim - 1] = dilation
        grown = data.map_overlap(dilate, pixels=dilation, depth=depth, boundary="none", dtype=bool)
    else:
        grown = dilate(data, dilation)
    return bad.copy(data=grown)


def mask_scl(
    cube: xr.DataArray, *, scl_band: str = "SCL", invalid: Sequence[int] = SCL_INVALID, dilation: int = 0,
) -> xr.DataArray:
    """Set every band to NaN where the SCL band is invalid; returns the cube without the SCL band."""
    if scl_band not in cube.coords["band"].values:
        raise ConfigError(f"the cube has no {scl_band!r} band to mask with: load it (bands=[..., 'SCL'])")
    bad = _invalid_scl_of(cube, scl_band, invalid=invalid, dilation=dilation)
    bands = cube.drop_sel(band=scl_band)
    return bands.where(~bad)


def _invalid_scl_of(
    cube: xr.DataArray, scl_band: str, *, invalid: Sequence[int] = SCL_INVALID, dilation: int = 0,
) -> xr.DataArray:
    """:func:`invalid_scl` of the ``scl_band`` of a cube (without the cube's radiometry coordinates)."""
    scl = cube.sel(band=scl_band, drop=True)
    return invalid_scl(scl.drop_vars([c for c in RADIOMETRY_COORDS if c in scl.coords]), invalid=invalid,
                       dilation=dilation)


# --- compositing and gap filling ------------------------------------------------------------------------

def _step(freq: str | int) -> pd.DateOffset | None:
    """Return the offset between bin starts, or None for dekads."""
    days = freq if isinstance(freq, int) else int(freq[:-1]) if freq[:-1].isdigit() and freq[-1:] in "dD" else None
    if days is not None:
        if days < 1:
            raise ConfigError(f"a composite period is at least 1 day, got {freq!r}")
        return pd.DateOffset(days=days)
    if freq in ("monthly", "MS", "month"):
        return pd.DateOffset(months=1)
    if freq in ("dekadal", "dekad"):
        return None
    raise ConfigError(f"unknown composite frequency {freq!r}: use 'monthly', 'dekadal' or a number of days "
                      "such as '10D'")


def _dekad_start(t: pd.Timestamp) -> pd.Timestamp:
    return t.normalize().replace(day=1 if t.day <= 10 else 11 if t.day <= 20 else 21)


def _next_bin(t: pd.Timestamp, step: pd.DateOffset | None) -> pd.Timestamp:
    if step is not None:
        return t + step
    return t.replace(day=t.day + 10) if t.day < 21 else (t + pd.offsets.MonthBegin(1)).normalize()


def time_axis(
    start: str | pd.Timestamp, *, freq: str | int = "monthly", end: str | pd.Timestamp | None = None,
    periods: int | None = None,
) -> pd.DatetimeIndex:
    """Regular bin starts from ``start`` (monthly and dekadal bins snap to month/dekad starts).

    Give ``end`` (last bin is the one holding ``end``) or ``periods``.
    """
    if (end is None) == (periods is None):
        raise ConfigError("give exactly one of end= or periods= for the time axis")
    step = _step(freq)
    t = pd.Timestamp(start).tz_localize(None).normalize()
    if step is None:
        t = _dekad_start(t)
    elif step == pd.DateOffset(months=1):
        t = t.replace(day=1)
    stop = None if end is None else pd.Timestamp(end).tz_localize(None)
    out = []
    while (periods is not None and len(out) < periods) or (stop is not None and t <= stop):
        out.append(t)
        t = _next_bin(t, step)
    return pd.DatetimeIndex(out, name="time")


def bin_index(times: Sequence, axis: pd.DatetimeIndex, *, freq: str | int = "monthly") -> np.ndarray:
    """Index of the bin of ``axis`` holding each time (-1 outside the axis)."""
    if len(axis) == 0:
        return np.full(len(times), -1)
    t = pd.DatetimeIndex(times)
    t = t.tz_localize(None) if t.tz is not None else t
    edges = np.append(axis.values, _next_bin(axis[-1], _step(freq)).to_datetime64())
    idx = np.searchsorted(edges, t.values, side="right") - 1
    return np.where((idx >= 0) & (idx < len(axis)), idx, -1)


def _bin_rows(bins: np.ndarray, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of each bin, bin after bin, and where each bin's rows start (``nbins + 1`` offsets)."""
    bins = np.asarray(bins, dtype=np.intp)
    inside = np.flatnonzero((bins >= 0) & (bins < nbins))
    order = inside[np.argsort(bins[inside], kind="stable")]
    return order, np.searchsorted(bins[order], np.arange(nbins + 1)).astype(np.intp)


def composite_np(values: np.ndarray, bins: np.ndarray, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    """Median of non-NaN observations and their count, per bin, along axis 0 (empty bins give NaN, 0).

    The median of an even count is the mean of the two middle values, in float64.
    """
    shape = (nbins, *values.shape[1:])
    median, count = np.empty(shape, "float32"), np.empty(shape, "int16")
    values = _flat(values if values.dtype.kind == "f" else values.astype("float64"), 1)
    _composite_kernel(values, *_bin_rows(bins, nbins), median.reshape(nbins, -1), count.reshape(nbins, -1))
    return median, count


class Composite(NamedTuple):
    """Temporal composite: median reflectance and the number of valid observations behind each value."""

    median: xr.DataArray
    count: xr.DataArray


def _default_axis(cube: xr.DataArray, freq: str | int) -> pd.DatetimeIndex:
    times = pd.DatetimeIndex(cube["time"].values)
    return time_axis(times.min(), freq=freq, end=times.max())


def composite(
    cube: xr.DataArray, *, freq: str | int = "monthly", axis: pd.DatetimeIndex | None = None,
) -> Composite:
    """Median of valid (non-NaN) observations per bin of a regular time axis, with the valid count.

    ``axis`` holds bin starts (default: from the cube's first to last time step at ``freq``; see
    :func:`time_axis`); observations outside it are dropped. Lazy on dask input (each spatial chunk is
    composited with all its time steps in memory).
    """
    axis = _default_axis(cube, freq) if axis is None else axis
    bins = bin_index(cube["time"].values, axis, freq=freq)
    if cube.chunks is not None:
        cube = cube.chunk({"time": -1})
    median, count = xr.apply_ufunc(
        lambda v: tuple(np.moveaxis(a, 0, -1) for a in composite_np(np.moveaxis(v, -1, 0), bins, len(axis))),
        cube, input_core_dims=[["time"]], output_core_dims=[["bin"], ["bin"]],
        dask="parallelized", output_dtypes=["float32", "int16"],
        dask_gufunc_kwargs={"output_sizes": {"bin": len(axis)}},
    )
    coords = {"time": axis.values}
    median = median.rename(bin="time").assign_coords(coords).transpose(*cube.dims)
    count = count.rename(bin="time").assign_coords(coords).transpose(*cube.dims)
    median.attrs = dict(cube.attrs, composite=str(freq))
    return Composite(median.astype("float32"), count)


def _edges_nearest(edges: str) -> bool:
    if edges not in ("nearest", "nan"):
        raise ConfigError(f"edges must be 'nearest' or 'nan', got {edges!r}")
    return edges == "nearest"


def _days(times: np.ndarray) -> np.ndarray:
    """Days since the first of ``times``, as float64 interpolation positions."""
    return (pd.DatetimeIndex(times) - pd.Timestamp(times[0])).days.values.astype("float64")


def fill_gaps_np(values: np.ndarray, positions: np.ndarray, *, edges: str = "nearest") -> np.ndarray:
    """Fill NaN along axis 0 by linear interpolation at ``positions`` (e.g. days).

    ``edges``: ``"nearest"`` repeats the first/last valid value before/after it, ``"nan"`` leaves them
    NaN. Series without any valid value stay NaN. Interpolation is in float64; the result has the dtype
    of ``values`` (float32 for integers).
    """
    nearest = _edges_nearest(edges)
    out = np.empty(values.shape, values.dtype if values.dtype.kind == "f" else "float32")
    values = _flat(values if values.dtype.kind == "f" else values.astype("float64"), 1)
    _fill_kernel(values, np.asarray(positions, "float64"), nearest, out.reshape(len(out), -1))
    return out


def fill_gaps(cube: xr.DataArray, *, edges: str = "nearest") -> xr.DataArray:
    """Linear interpolation of NaN gaps along ``time`` (by date), lazy on dask input."""
    days = _days(cube["time"].values)
    if cube.chunks is not None:
        cube = cube.chunk({"time": -1})
    out = xr.apply_ufunc(
        lambda v: np.moveaxis(fill_gaps_np(np.moveaxis(v, -1, 0), days, edges=edges), 0, -1),
        cube, input_core_dims=[["time"]], output_core_dims=[["time"]], dask="parallelized",
        output_dtypes=[cube.dtype],
    )
    return out.transpose(*cube.dims)


# --- pipeline -------------------------------------------------------------------------------------------

def _preprocess_block(
    dn: list[np.ndarray], bad: list[np.ndarray] | None, *rad: list[np.ndarray], nodata: np.ndarray,
    order: np.ndarray, starts: np.ndarray, pos: np.ndarray, nearest: bool,
) -> np.ndarray:
    """The composited, gap-filled reflectance (nbins, B, y, x) of DNs (T, B, y, x) given as a list of time chunks."""
    steps = numba.typed.List([_flat(step, 1) for chunk in dn for step in chunk])  # (B, P) each
    out = np.empty((len(pos), *dn[0].shape[1:]), "float32")
    mask = _bad_2d(None if bad is None else np.concatenate(bad), len(steps))
    _preprocess_kernel(steps, mask, _Radiometry(*(r[0] for r in rad)), nodata, order, starts, pos, nearest,
                       out.reshape(*out.shape[:2], -1))
    return out


class ChunkPlan(NamedTuple):
    """What :func:`preprocess` does to every chunk of a cube's DNs (see :func:`plan_chunks`)."""

    bands: np.ndarray  #: the cube's bands that become reflectance, in output order
    scl: int | None  #: the cube's SCL band, None without
    rad: _Radiometry  #: reading the DNs of those bands, per (time, output band)
    order: np.ndarray  #: the time steps of each bin, bin after bin
    starts: np.ndarray  #: where each bin's steps start in ``order`` (nbins + 1)
    pos: np.ndarray  #: the bins' positions (days since the first), for gap filling
    nearest: bool  #: leading and trailing gaps repeat the nearest value (else stay NaN)


def plan_chunks(
    cube: xr.DataArray, *, freq: str | int = "monthly", axis: pd.DatetimeIndex | None = None,
    scl_band: str = "SCL", edges: str = "nearest", bands: Sequence[str] | None = None,
) -> ChunkPlan:
    """The :class:`ChunkPlan` of :func:`preprocess` for a loaded ``(time, band, y, x)`` cube of DNs, for ``bands``
    (default: all but ``scl_band``)."""
    nearest = _edges_nearest(edges)
    axis = _default_axis(cube, freq) if axis is None else axis
    names = [str(b) for b in cube["band"].values]
    wanted = [b for b in names if b != scl_band] if bands is None else list(bands)
    unknown = [b for b in wanted if b not in names or b == scl_band]
    if unknown:
        raise ConfigError(f"the cube has no reflectance band {unknown} (it has {names})")
    order, starts = _bin_rows(bin_index(cube["time"].values, axis, freq=freq), len(axis))
    return ChunkPlan(np.array([names.index(b) for b in wanted]), names.index(scl_band) if scl_band in names else None,
                     _radiometry(cube.sel(band=wanted).transpose("time", "band", ...)), order, starts,
                     _days(axis.values), nearest)


def preprocess(
    cube: xr.DataArray, *, freq: str | int = "monthly", axis: pd.DatetimeIndex | None = None,
    scl_band: str = "SCL", dilation: int = 0, edges: str = "nearest",
) -> xr.DataArray:
    """Loaded DNs -> composited, gap-filled float32 reflectance ``(time, band, y, x)`` on ``axis``.

    Steps: :func:`to_reflectance` (each item's scale and offset, no-data), :func:`mask_scl` when the cube holds
    an SCL band, :func:`composite` (median per bin of ``axis``, default spanning the cube at ``freq``) and
    :func:`fill_gaps`. Lazy on dask input. The steps run fused, one pass over each pixel's series per chunk,
    with the results of the step-by-step functions.
    """
    axis = _default_axis(cube, freq) if axis is None else axis
    cube = cube.transpose("time", "band", "y", "x")
    plan = plan_chunks(cube, freq=freq, axis=axis, scl_band=scl_band, edges=edges)
    bad = None if plan.scl is None else _invalid_scl_of(cube, scl_band, dilation=dilation)
    cube = cube.isel(band=plan.bands)
    data = _blockwise(_preprocess_block, cube, bad, plan.rad, len(axis), order=plan.order, starts=plan.starts,
                      nodata=np.asarray(S2_NODATA, "float64"), pos=plan.pos, nearest=plan.nearest)
    coords = {k: v for k, v in cube.coords.items() if "time" not in v.dims and k not in RADIOMETRY_COORDS}
    return xr.DataArray(data, dims=cube.dims, coords={**coords, "time": axis.values},
                        attrs={"units": "reflectance", "composite": str(freq)}).rename(None)


# --- the same on a torch device ---------------------------------------------------------------------------

def preprocess_tensor(dn: torch.Tensor, plan: ChunkPlan) -> torch.Tensor:
    """:func:`preprocess` of one chunk of DNs ``(time, band, y, x)`` (the cube's bands, SCL included) on its torch
    device: float32 ``(bin, band, y, x)``, the numbers of the CPU path (SCL masks without dilation)."""
    import torch

    dev, (ntime, _, height, width) = dn.device, dn.shape
    dn = dn.float()  # exact for DNs of 16 bits; CUDA has few kernels for unsigned 16-bit tensors
    x = dn[:, torch.as_tensor(plan.bands, device=dev)].reshape(ntime, len(plan.bands), -1)

    def table(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, device=dev)[..., None]

    refl = torch.where(table(plan.rad.exact), (x + table(plan.rad.step)) * table(plan.rad.scale),
                       x * table(plan.rad.scale) + table(plan.rad.offset))
    missing = x == table(plan.rad.nodata.astype("float32"))
    for value in S2_NODATA:
        missing |= x == value
    if plan.scl is not None:
        scl = dn[:, plan.scl].reshape(ntime, 1, -1)
        missing |= torch.isin(scl, torch.as_tensor(SCL_INVALID, dtype=scl.dtype, device=dev)) | scl.isnan()
    median = _median_tensor(refl.masked_fill(missing, torch.nan), plan)
    return _fill_tensor(median, plan).reshape(len(median), len(plan.bands), height, width)


def _median_tensor(refl: torch.Tensor, plan: ChunkPlan) -> torch.Tensor:
    """The median of the non-NaN values per bin of ``refl`` (T, ...), NaN last after sorting."""
    import torch

    out = refl.new_full((len(plan.starts) - 1, *refl.shape[1:]), torch.nan)
    for b in range(len(out)):
        rows = torch.as_tensor(plan.order[plan.starts[b]:plan.starts[b + 1]], device=refl.device)
        if len(rows) == 0:
            continue
        values = refl[rows].sort(dim=0).values
        n = (~values.isnan()).sum(dim=0, keepdim=True)
        lo, hi = values.gather(0, ((n - 1) // 2).clamp(min=0)), values.gather(0, (n // 2).clamp(max=len(rows) - 1))
        out[b] = ((lo + hi) * 0.5)[0]  # = the float64 mean rounded: the float32 sum is rounded once, halving is exact
    return out


def _fill_tensor(values: torch.Tensor, plan: ChunkPlan) -> torch.Tensor:
    """:func:`fill_gaps_np` of ``values`` (n, ...) with the plan's positions and edges."""
    import torch

    n, dev = len(values), values.device
    valid = ~values.isnan()
    step = torch.arange(n, device=dev).view(n, *[1] * (values.ndim - 1)).expand_as(values)
    prev = torch.where(valid, step, -1).cummax(dim=0).values
    after = torch.where(valid, step, n).flip(0).cummin(dim=0).values.flip(0)
    p, a = prev.clamp(min=0), after.clamp(max=n - 1)
    pos = torch.as_tensor(plan.pos, device=dev)
    t0, t1 = pos[p], pos[a]
    weight = torch.where(t1 > t0, (pos[step] - t0) / (t1 - t0), 0.0)
    before_value, after_value = values.gather(0, p), values.gather(0, a)
    inner = (after_value.double() - before_value.double()) * weight + before_value.double()
    out = torch.where((prev >= 0) & (after < n), inner.float(), torch.nan)
    if plan.nearest:
        out = torch.where((prev >= 0) & (after == n), before_value, out)
        out = torch.where((prev < 0) & (after < n), after_value, out)
    return torch.where(valid, values, out)
