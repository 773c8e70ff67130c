"""The end-to-end crop-mapping run: search -> load -> preprocess -> infer, timed per stage.

Used by the ``predict`` CLI, the dashboard and the benchmarks. :func:`run` returns a :class:`RunResult`
holding the prediction on the cube's grid, the scenes used, the assets that could not be read and a run
manifest; :func:`export_run` writes the crop map and confidence COGs, the class areas and the manifest.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from cropcore.aoi import AOILike, normalize_aoi
from cropcore.cube.dask_setup import compute
from cropcore.cube.load import AssetFailure, load_cube
from cropcore.cube.preprocess import preprocess, time_axis
from cropcore.dates import DateLike, normalize_daterange
from cropcore.errors import ConfigError, InvalidDateRangeError
from cropcore.stac.catalog import SearchResult, search_items

Progress = Callable[[float, str], None]
DEFAULT_MODEL = "tempcnn_worldcereal"
#: Reflectance cubes smaller than this are computed once and kept in memory (the dashboard's plots reuse them).
PERSIST_BYTES = 256 * 2**20
#: Height in pixels of the cube's dask chunks (see :func:`cube_chunks`).
CHUNK_ROWS = 512


@dataclass(frozen=True)
class RunParams:
    """Everything that determines a run's result (also the cache key of the dashboard)."""

    aoi: AOILike
    start: DateLike
    end: DateLike
    max_cloud: float | None = 80.0
    catalog: str = "local"
    collections: Sequence[str] | None = None
    model: str = DEFAULT_MODEL
    tile: int = 64
    overlap: int = 16
    strip: int = 512
    batch_size: int = 4
    devices: str = "auto"
    amp: bool | str = True
    resolution: float = 10.0


@dataclass
class RunResult:
    """The outputs of :func:`run`."""

    params: RunParams
    search: SearchResult
    axis: pd.DatetimeIndex
    reflectance: xr.DataArray  # (time, band, y, x) on the model's time axis, lazy
    prediction: xr.Dataset  # class (uint8), confidence (float32) on the cube's grid
    meta: dict[str, Any]
    failures: list[AssetFailure]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.meta["legend"]]

    @property
    def colors(self) -> dict[int, str]:
        return {c["id"]: c["color"] for c in self.meta["legend"]}

    def manifest(self) -> dict[str, Any]:
        """What produced this map: scenes, model and checksum, parameters, versions, time, failures."""
        params = {k: v for k, v in asdict(self.params).items() if k != "aoi"}
        return {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "aoi": normalize_aoi(self.params.aoi).__geo_interface__,
            "parameters": params,
            "catalog_url": self.search.url,
            "items": [item.id for item in self.search.items],
            "time_axis": [t.strftime("%Y-%m-%d") for t in self.axis],
            "model": {"name": self.meta.get("name"), "architecture": self.meta.get("model"),
                      "sha256": self.meta.get("sha256")},
            "unreadable_assets": [asdict(f) for f in self.failures],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "versions": {p: version(p) for p in ("cropcore", "torch", "odc-stac", "rasterio", "pystac-client")},
        }


def cube_chunks(strip: int) -> dict[str, int]:
    """Dask chunks of the loaded cube: as wide as the inference strips, :data:`CHUNK_ROWS` tall.

    Inference then holds about two chunk rows of one strip of input at a time, whatever the AOI's size.
    Tall chunks matter for speed: every chunk decodes whole COG blocks, so over 256 px blocks 112-row chunks
    read 2.4x slower per pixel than 448-row chunks (benchmarks/README.md).
    """
    return {"y": CHUNK_ROWS, "x": strip}


def season_axis(meta: dict[str, Any], start: DateLike, end: DateLike) -> pd.DatetimeIndex:
    """The model's monthly time axis for the season that contains ``start``.

    A model trained on months ``M11 .. M10`` classifies one November-to-October season: the season whose
    October is the first one on or after ``start`` (so 2020-11-01 and 2021-03-01 both give Nov 2020 – Oct
    2021).
    """
    axis = meta.get("time_axis", {})
    steps = axis.get("steps", [])
    if axis.get("kind") != "season_months" or not steps:
        raise ConfigError(f"model {meta.get('name')!r} has no monthly season axis; cannot build its input")
    first, _ = normalize_daterange((start, end))
    if first is None:
        raise ConfigError("give a start date: the model needs to know which season to classify")
    last_month = int(steps[-1][1:])
    year = first.year if first.month <= last_month else first.year + 1
    season_end = pd.Timestamp(year=year, month=last_month, day=1)
    season_start = season_end - pd.DateOffset(months=len(steps) - 1)
    last_day = (season_end + pd.offsets.MonthEnd(1)).date()
    if last_day > datetime.now(UTC).date():
        raise InvalidDateRangeError(
            f"the season {season_start:%b %Y} – {season_end:%b %Y} is not over yet (it ends {last_day}) and the "
            f"model needs all {len(steps)} months: start in an earlier season, e.g. {season_start.year - 1}-"
            f"{season_start.month:02d}-01"
        )
    return time_axis(season_start, freq="monthly", periods=len(steps))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc only).

    A run frees hundreds of MB from many threads; glibc keeps most of it in per-thread arenas, so a
    long-lived process (the dashboard) would grow by tens of MB per run without this.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def load_model(name: str) -> tuple[Any, dict[str, Any]]:
    """A shipped checkpoint (or file) and its metadata, with the file's sha256 added to the metadata."""
    from cropcore.models import load_checkpoint
    from cropcore.models.checkpoint import resolve

    model, meta = load_checkpoint(name)
    return model, {**meta, "sha256": _sha256(resolve(name))}


def run(
    params: RunParams, *, progress: Progress | None = None, model: tuple[Any, dict] | None = None,
    workdir: Path | None = None,
) -> RunResult:
    """Search, load, preprocess and classify; ``model`` may pass an already loaded ``(model, meta)``.

    With ``workdir`` the map is written there block by block (:class:`~cropcore.inference.sinks.GeoTiffSink`) and read
    back lazily, so memory does not grow with the map; otherwise it is kept in memory.
    """
    from cropcore.inference.predict import predict_map
    from cropcore.inference.sinks import GeoTiffSink

    report = progress or (lambda f, m: None)
    timings: dict[str, float] = {}
    net, meta = model or load_model(params.model)
    axis = season_axis(meta, params.start, params.end)
    season_end = (axis[-1] + pd.offsets.MonthEnd(1)).strftime("%Y-%m-%d")

    t0 = time.perf_counter()
    report(0.0, f"searching scenes for {axis[0]:%b %Y} – {axis[-1]:%b %Y}")
    found = search_items(params.aoi, (axis[0].strftime("%Y-%m-%d"), season_end), max_cloud=params.max_cloud,
                         catalog=params.catalog, collections=params.collections)
    timings["search"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report(0.1, f"loading {len(found.items)} scenes")
    bands = list(meta["bands"])
    has_scl = all("SCL" in item.assets for item in found.items)
    chunks = cube_chunks(params.strip)
    loaded = load_cube(found.items, [*bands, "SCL"] if has_scl else bands, aoi=params.aoi,
                       resolution=params.resolution, chunks=chunks)
    timings["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report(0.2, "compositing and gap filling")
    refl = preprocess(loaded.cube, freq="monthly", axis=axis).sel(band=bands)
    if refl.nbytes < PERSIST_BYTES:  # small AOIs: read once here, reuse for the plots; large ones stay lazy
        def compute_progress(fraction: float, message: str) -> None:
            report(round(0.2 + 0.1 * fraction, 6), f"compositing: {message}")

        (values,) = compute(refl.data, progress=compute_progress)
        refl = refl.copy(data=values)
    timings["preprocess"] = time.perf_counter() - t0

    t0 = time.perf_counter()

    def infer_progress(fraction: float, message: str) -> None:
        report(round(0.3 + 0.7 * fraction, 6), f"classifying: {message}")

    sink = None
    if workdir is not None:
        sink = GeoTiffSink(workdir, crs=refl.rio.crs, transform=refl.rio.transform(), height=refl.sizes["y"],
                           width=refl.sizes["x"])
    prediction = predict_map(refl, net, meta=meta, tile=params.tile, overlap=params.overlap, strip=params.strip,
                             batch_size=params.batch_size, devices=params.devices, amp=params.amp,
                             sink=sink, progress=infer_progress)
    timings["infer"] = time.perf_counter() - t0
    release_memory()
    report(1.0, "done")
    return RunResult(params, found, axis, refl, prediction, meta, loaded.failures, timings)


def export_run(result: RunResult, out: Path, *, name: str = "cropmap") -> dict[str, Path]:
    """Write ``<name>.tif`` (classes, with the manifest as ``<name>.json``), ``<name>_confidence.tif`` and
    ``<name>_areas.csv`` into ``out``; returns their paths.

    ``name`` is a plain file name (no folder, no ``..``). Each file is written atomically; when one fails
    (or the run is interrupted) the files this call already wrote are removed: all or nothing.
    """
    from cropcore.inference.predict import NODATA
    from cropcore.products.export import write_cog, write_text_atomic
    from cropcore.products.stats import class_areas

    if not name or name.startswith(".") or Path(name).name != name or "\\" in name:
        raise ConfigError(f"the file name {name!r} must be a plain name without folders or '..' (e.g. 'cropmap')")
    t0 = time.perf_counter()
    manifest = result.manifest()
    classes = result.prediction["class"]
    paths = {"map": out / f"{name}.tif", "manifest": out / f"{name}.json",
             "confidence": out / f"{name}_confidence.tif", "areas": out / f"{name}_areas.csv"}
    written: list[Path] = []
    try:
        write_cog(classes, paths["map"], class_names=result.class_names, colormap=result.colors, nodata=NODATA,
                  tags={"MANIFEST": manifest})
        written += [paths["map"], paths["manifest"]]
        write_cog(result.prediction["confidence"], paths["confidence"],
                  tags={"MANIFEST": manifest, "DESCRIPTION": "max class probability"})
        written += [paths["confidence"], paths["confidence"].with_suffix(".json")]
        areas = class_areas(classes, result.class_names, nodata=NODATA)
        write_text_atomic(areas.to_csv(index=False), paths["areas"])
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    result.timings["write"] = time.perf_counter() - t0
    return paths
