"""Pure preprocessing of Sentinel-2 cubes: reflectance, SCL masks, composites, gap filling.

Every function takes and returns xarray/numpy objects and stays lazy on dask-backed input. Cubes have dims
``(time, band, y, x)`` as made by :func:`cropcore.cube.load.load_cube`; :func:`preprocess` chains the steps
into the model input: composited, gap-filled reflectance on a regular time axis. Spectral indices are in
:mod:`cropcore.cube.indices`, model-input normalisation in :mod:`cropcore.cube.normalise`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import dask.array as dska
import numpy as np
import pandas as pd
import xarray as xr

from cropcore.errors import ConfigError
from cropcore.legend import SCL_INVALID

#: Digital numbers that mean "no data" in Sentinel-2 L2A products, whatever the asset metadata says.
S2_NODATA: tuple[int, ...] = (0, 65535)
#: Coordinates of a loaded cube that say how to read its DNs, per ``(time, band)`` (see
#: :func:`to_reflectance`); they do not describe reflectance and are dropped with the conversion.
RADIOMETRY_COORDS: tuple[str, ...] = ("scale", "offset", "nodata")


# --- reflectance and masks -------------------------------------------------------------------------------

def _reflectance_np(
    dn: np.ndarray, scale: np.ndarray | float, offset: np.ndarray | float, band_nodata: np.ndarray | float,
    invalid: np.ndarray | bool, *, nodata: Sequence[float],
) -> np.ndarray:
    """:func:`to_reflectance` of arrays, NaN also where ``invalid``; all broadcast against ``dn``."""
    scale, offset = np.asarray(scale, dtype="float64"), np.asarray(offset, dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        offset_dn = offset / scale  # the offset in DN: -1000 for -0.1 at scale 1e-4
    known = np.isfinite(offset_dn)  # NaN where no item had the band: its reflectance is NaN
    steps = np.round(np.where(known, offset_dn, 0))
    if (dn.dtype.kind in "ui" and dn.dtype.itemsize <= 2 and np.all(abs(offset_dn[known] - steps[known]) < 1e-6)
            and np.all(abs(steps) < 2**23)):
        # float32 arithmetic gives the float64 result of (DN + offset / scale) * scale: the sum is an integer
        # below 2**24, so exact, and its product with the float32 scale has at most 48 significant bits, so
        # is rounded only once
        refl = dn.astype("float32")
        refl += steps.astype("float32")
        refl *= scale.astype("float32")
    else:
        refl = (dn.astype("float32") * scale.astype("float32") + offset.astype("float32")).astype("float32")
    bad = (dn == band_nodata) | invalid
    for value in nodata:
        bad |= dn == value
    np.copyto(refl, np.float32(np.nan), where=bad)
    return refl


def _reflectance(cube: xr.DataArray, invalid: xr.DataArray | bool, *, nodata: Sequence[float]) -> xr.DataArray:
    """:func:`to_reflectance`, NaN also where ``invalid`` (one pass over the cube)."""
    missing = [c for c in ("scale", "offset") if c not in cube.coords]
    if missing:
        raise ConfigError(f"the cube has no {' or '.join(missing)} coordinate, so its DNs cannot be read as "
                          "reflectance: load it with load_cube, or assign_coords(scale=..., offset=...) so that "
                          "reflectance = DN * scale + offset")
    out = xr.apply_ufunc(
        _reflectance_np, cube, cube.coords["scale"], cube.coords["offset"], cube.coords.get("nodata", np.nan),
        invalid, dask="parallelized", kwargs={"nodata": tuple(nodata)}, output_dtypes=["float32"], join="inner",
    )
    out.attrs = {"units": "reflectance"}
    out.name = None
    return out.drop_vars([c for c in RADIOMETRY_COORDS if c in out.coords])


def to_reflectance(cube: xr.DataArray, *, nodata: Sequence[float] = S2_NODATA) -> xr.DataArray:
    """Digital numbers -> float32 reflectance ``DN * scale + offset``, no-data -> NaN.

    ``scale`` and ``offset`` are the cube's coordinates of those names (per ``(time, band)`` as
    :func:`cropcore.cube.load.load_cube` sets them from each item's metadata, or broadcastable to it). No-data
    are the values in ``nodata`` and the cube's ``nodata`` coordinate, if any. Reflectance below 0 (dark pixels
    after the offset) is kept.
    """
    return _reflectance(cube, False, nodata=nodata)


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


def _sort_rows(a: np.ndarray) -> None:
    """Sort a few rows in place along axis 0, NaN last (odd-even transposition, whole rows at a time)."""
    k = len(a)
    for r in range(k):
        lo, hi = a[r % 2:k - 1:2], a[r % 2 + 1::2]
        low = np.fmin(lo, hi)  # the valid one if either is NaN
        np.maximum(lo, hi, out=hi)  # NaN if either is NaN
        lo[...] = low


def _middle(values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two middle non-NaN values of ``values[rows]`` (two rows or more) along axis 0, and their count.

    The two are equal for an odd count, NaN for none.
    """
    if len(rows) == 2:  # the sorted pair, or the valid one twice
        first, second = values[rows[0]], values[rows[1]]
        n = np.add(~np.isnan(first), ~np.isnan(second), dtype="int16")
        return np.fmin(first, second), np.fmax(first, second), n
    k = len(rows)
    sel = values[rows].reshape(k, -1)
    n = k - np.isnan(sel).sum(axis=0, dtype="int16")
    if k <= 24:  # beyond that np.sort is faster
        _sort_rows(sel)
    else:
        sel.sort(axis=0)
    # the n valid values lead: take rows (n - 1) // 2 and n // 2 (-1, the last row, is NaN when n is 0)
    cols = np.arange(sel.shape[1])
    lo, hi = (sel.ravel().take(np.multiply(r, len(cols), dtype=np.intp) + cols) for r in ((n - 1) // 2, n // 2))
    shape = values.shape[1:]
    return lo.reshape(shape), hi.reshape(shape), n.reshape(shape)


def composite_np(values: np.ndarray, bins: np.ndarray, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    """Median of non-NaN observations and their count, per bin, along axis 0 (empty bins give NaN, 0).

    The median of an even count is the mean of the two middle values, in float64.
    """
    shape = (nbins, *values.shape[1:])
    median = np.full(shape, np.nan, dtype="float32")
    count = np.zeros(shape, dtype="int16")
    for b in range(nbins):
        rows = np.flatnonzero(bins == b)
        if len(rows) == 1:
            median[b] = values[rows[0]]
            count[b] = ~np.isnan(values[rows[0]])
        elif len(rows):
            lo, hi, count[b] = _middle(values, rows)
            mid = np.add(lo, hi, dtype="float64")
            mid /= 2
            median[b] = mid
    return median, count


class Composite(NamedTuple):
    """Temporal composite: median reflectance and the number of valid observations behind each value."""

    median: xr.DataArray
    count: xr.DataArray


def composite(
    cube: xr.DataArray, *, freq: str | int = "monthly", axis: pd.DatetimeIndex | None = None,
) -> Composite:
    """Median of valid (non-NaN) observations per bin of a regular time axis, with the valid count.

    ``axis`` holds bin starts (default: from the cube's first to last time step at ``freq``; see
    :func:`time_axis`); observations outside it are dropped. Lazy on dask input (each spatial chunk is
    composited with all its time steps in memory).
    """
    if axis is None:
        times = pd.DatetimeIndex(cube["time"].values)
        axis = time_axis(times.min(), freq=freq, end=times.max())
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


def fill_gaps_np(values: np.ndarray, positions: np.ndarray, *, edges: str = "nearest") -> np.ndarray:
    """Fill NaN along axis 0 by linear interpolation at ``positions`` (e.g. days).

    ``edges``: ``"nearest"`` repeats the first/last valid value before/after it, ``"nan"`` leaves them
    NaN. Series without any valid value stay NaN. Interpolation is in float64; the result has the dtype
    of ``values`` (float32 for integers).
    """
    if edges not in ("nearest", "nan"):
        raise ConfigError(f"edges must be 'nearest' or 'nan', got {edges!r}")
    n = values.shape[0]
    x = np.ascontiguousarray(values.reshape(n, -1), dtype=values.dtype if values.dtype.kind == "f" else "float64")
    pos = np.asarray(positions, dtype="float64")
    valid = ~np.isnan(x)
    # per step: 1 + the previous valid step (0: none), the next valid step (n: none) and its value
    small = np.min_scalar_type((n + 1) ** 2)  # also holds the weight table indices below
    after = np.multiply(valid, np.arange(1, n + 1, dtype=small)[:, None])
    before = n - np.multiply(valid, np.arange(n, 0, -1, dtype=small)[:, None])
    next_val = x.copy()
    for i in range(1, n):
        np.maximum(after[i], after[i - 1], out=after[i])
    for i in range(n - 2, -1, -1):
        np.minimum(before[i], before[i + 1], out=before[i])
        np.putmask(next_val[i], ~valid[i], next_val[i + 1])
    out = np.empty(x.shape, values.dtype if values.dtype.kind == "f" else "float32")
    val = np.full(x.shape[1], np.nan, x.dtype)  # the previous valid value
    for i in range(n):
        np.putmask(val, valid[i], x[i])
        # weight of the next value by (previous + 1, next - i): 0 at a valid step, where both are i
        t0, t1 = np.append(np.nan, pos[:i + 1])[:, None], np.append(pos[i:], np.nan)[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            table = np.where(t1 > t0, (pos[i] - t0) / (t1 - t0), 0.0).ravel()
        filled = np.subtract(next_val[i], val, dtype="float64")
        filled *= table.take(after[i] * (n - i + 1) + (before[i] - i))
        filled += val
        out[i] = filled
        if edges == "nearest":  # mostly sparse masks, where copyto beats putmask
            np.copyto(out[i], next_val[i], where=after[i] == 0)
            np.copyto(out[i], val, where=before[i] == n)
    return out.reshape(values.shape)


def fill_gaps(cube: xr.DataArray, *, edges: str = "nearest") -> xr.DataArray:
    """Linear interpolation of NaN gaps along ``time`` (by date), lazy on dask input."""
    days = (pd.DatetimeIndex(cube["time"].values) - pd.Timestamp(cube["time"].values[0])).days.values
    if cube.chunks is not None:
        cube = cube.chunk({"time": -1})
    out = xr.apply_ufunc(
        lambda v: np.moveaxis(fill_gaps_np(np.moveaxis(v, -1, 0), days, edges=edges), 0, -1),
        cube, input_core_dims=[["time"]], output_core_dims=[["time"]], dask="parallelized",
        output_dtypes=[cube.dtype],
    )
    return out.transpose(*cube.dims)


# --- pipeline -------------------------------------------------------------------------------------------

def preprocess(
    cube: xr.DataArray, *, freq: str | int = "monthly", axis: pd.DatetimeIndex | None = None,
    scl_band: str = "SCL", dilation: int = 0, edges: str = "nearest",
) -> xr.DataArray:
    """Loaded DNs -> composited, gap-filled float32 reflectance ``(time, band, y, x)`` on ``axis``.

    Steps: :func:`to_reflectance` (each item's scale and offset, no-data), :func:`mask_scl` when the cube holds
    an SCL band, :func:`composite` (median per bin of ``axis``, default spanning the cube at ``freq``) and
    :func:`fill_gaps`. Lazy on dask input.
    """
    if scl_band in cube.coords["band"].values:
        bad = _invalid_scl_of(cube, scl_band, dilation=dilation)
        refl = _reflectance(cube.drop_sel(band=scl_band), bad, nodata=S2_NODATA)
    else:
        refl = to_reflectance(cube)
    median, _ = composite(refl, freq=freq, axis=axis)
    return fill_gaps(median, edges=edges)
