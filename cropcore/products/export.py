"""Export maps as Cloud-Optimized GeoTIFFs with a colour table, legend and run manifest.

Files are written atomically: to a temporary file in the destination folder, validated with rio-cogeo,
then renamed, so a failure never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rioxarray  # noqa: F401 (registers the .rio accessor used below)
import xarray as xr
from rasterio._err import CPLE_BaseError  # private: GDAL's errors, not re-exported by rasterio.errors
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from cropcore.errors import ExportError

MEMORY = ":mem:"
#: Below this many free bytes a failed write is reported as a full disk.
LOW_SPACE_BYTES = 16 * 2**20
_WRITE_ERRORS = (OSError, RasterioError, CPLE_BaseError)


def write_error(path: Path, exc: BaseException) -> ExportError:
    """An :class:`ExportError` saying why ``path`` could not be written and what to do.

    GDAL reports a full disk as a generic I/O error: then the free space of the destination decides.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        full = exc.errno == errno.ENOSPC
        reason = exc.strerror or str(exc)
    else:
        folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), path.parent)
        try:
            full = shutil.disk_usage(folder).free < LOW_SPACE_BYTES
        except OSError:
            full = False
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if full:
        return ExportError(f"cannot write {path}: the disk is full; free some space or write somewhere else")
    return ExportError(f"cannot write {path}: {reason}; choose a folder you can write to")


def _atomic_target(dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    return Path(tmp)


def write_text_atomic(text: str, dst: Path) -> Path:
    """Write ``text`` to ``dst`` atomically (a temporary file renamed); raises :class:`ExportError`."""
    tmp: Path | None = None
    try:
        tmp = _atomic_target(dst)
        tmp.write_text(text)
        tmp.replace(dst)
    except OSError as exc:
        raise write_error(dst, exc) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return dst


def _hex_to_rgba(colour: str | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(colour, str):
        c = colour.lstrip("#")
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), 255
    rgba = tuple(int(v) for v in colour)
    return (*rgba, 255)[:4] if len(rgba) == 3 else rgba  # type: ignore[return-value]


@contextlib.contextmanager
def _source(da: xr.DataArray, nodata: float | None, tags: Mapping[str, str], categorical: bool) -> Iterator[Any]:
    """An open rasterio dataset holding ``da``: its own file when it is one read lazily from disk (so large
    maps stream from there), else an in-memory GeoTIFF."""
    source = da.encoding.get("source")
    if source and Path(source).is_file() and da.ndim == 2:
        with rasterio.open(source) as src:
            if src.count == 1 and src.shape == da.shape and src.transform == da.rio.transform():
                yield src
                return
    data = np.asarray(da.values)
    data = data[np.newaxis] if data.ndim == 2 else data
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
               "dtype": data.dtype.name, "crs": da.rio.crs, "transform": da.rio.transform(), "nodata": nodata}
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data)
            ds.update_tags(**tags)
            if categorical:
                ds.set_band_description(1, "crop class")
        with mem.open() as src:
            yield src


def write_cog(
    da: xr.DataArray,
    dst: str | Path = MEMORY,
    *,
    class_names: Sequence[str] | None = None,
    colormap: Mapping[int, str | Sequence[int]] | None = None,
    nodata: float | None = None,
    overviews: bool = True,
    tags: Mapping[str, Any] | None = None,
    extra_classes: Mapping[int, str] | None = None,
) -> bytes | Path:
    """Write a georeferenced 2-D (y, x) or 3-D (band, y, x) array as a COG.

    ``da`` carries its CRS and transform (rioxarray ``da.rio``). ``class_names`` and ``colormap`` (class
    value -> ``#rrggbb`` or RGB(A)) make a categorical map with an embedded colour table and the legend in
    the metadata; ``extra_classes`` (value -> name, e.g. "uncertain") join the legend but not the class names.
    ``tags`` (e.g. the run manifest) are stored as JSON text in the file. ``dst=":mem:"`` returns the file as
    bytes.
    """
    if da.rio.crs is None:
        raise ExportError("the array has no CRS: set one with da.rio.write_crs(...) before exporting")
    if da.ndim not in (2, 3):
        raise ExportError(f"expected a (y, x) or (band, y, x) array, got shape {da.shape}")
    categorical = class_names is not None or colormap is not None
    if categorical and (da.ndim != 2 or da.dtype != np.uint8):
        raise ExportError("a categorical map must be a single uint8 band")
    file_tags = {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in (tags or {}).items()}
    if class_names is not None:
        file_tags["CLASS_NAMES"] = json.dumps(list(class_names))
        legend = {**dict(enumerate(class_names)), **(extra_classes or {})}
        file_tags["LEGEND"] = json.dumps({str(i): n for i, n in legend.items()})
    cog_profile = cog_profiles.get("deflate")
    cog_profile.update(blockxsize=256, blockysize=256)
    cmap = {int(k): _hex_to_rgba(v) for k, v in colormap.items()} if colormap else None
    path = Path(tempfile.gettempdir()) / "cropcore.mem.tif" if dst == MEMORY else Path(dst)
    tmp: Path | None = None
    try:
        tmp = _atomic_target(path)
        with _source(da, nodata, file_tags, categorical) as src, warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Dataset color interpretation")  # palette is intended
            cog_translate(
                src, str(tmp), cog_profile, in_memory=src.name.startswith("/vsimem/"),
                quiet=True, colormap=cmap, overview_level=None if overviews else 0,
                overview_resampling="mode" if categorical else "average", additional_cog_metadata=file_tags,
            )
        valid, errors, _ = cog_validate(str(tmp), quiet=True)
        if not valid:
            raise ExportError(f"the written file is not a valid COG: {errors}")
        if dst == MEMORY:
            return tmp.read_bytes()
        tmp.replace(path)
    except ExportError:
        raise
    except _WRITE_ERRORS as exc:
        raise write_error(path, exc) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return path
