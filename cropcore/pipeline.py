"""The end-to-end crop-mapping run: search -> load -> preprocess -> infer, timed per stage.

Used by the ``predict`` CLI, the dashboard and the benchmarks. :func:`run` returns a :class:`RunResult`
holding the prediction on the cube's grid, the scenes used, the assets that could not be read and a run
manifest; :func:`export_run` writes the product (:mod:`cropcore.products.product`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dask.array as da
import pandas as pd
import xarray as xr
from torch import nn

from cropcore.aoi import AOI
from cropcore.cube.assets import AssetFailure
from cropcore.cube.dask_setup import compute
from cropcore.cube.load import latest_processing, load_cube
from cropcore.cube.preprocess import ChunkPlan, plan_chunks, preprocess, time_axis
from cropcore.dates import DateLike, normalize_daterange
from cropcore.energy import EnergyMeter, EnergyRecord, not_measured
from cropcore.errors import ConfigError, InvalidDateRangeError
from cropcore.inference.calibrate import Decision, with_min_confidence
from cropcore.inference.devices import resolve_devices
from cropcore.inference.options import InferenceOptions, cube_chunks
from cropcore.models import load_checkpoint
from cropcore.models.meta import ModelMeta
from cropcore.progress import Progress, silent, span
from cropcore.stac.bands import asset_key
from cropcore.stac.catalog import SearchResult, search_items

DEFAULT_MODEL = "tempcnn_worldcereal"
#: Reflectance cubes smaller than this are computed once and kept in memory (the dashboard's plots reuse them).
PERSIST_BYTES = 256 * 2**20


@dataclass(frozen=True)
class RunParams:
    """Everything that determines a run's result (also the cache key of the dashboard).

    ``aoi`` may be anything :meth:`AOI.parse <cropcore.aoi.AOI.parse>` accepts; it is parsed here, so a bad
    one fails before any work.
    """

    aoi: AOI
    start: DateLike
    end: DateLike
    max_cloud: float | None = 80.0
    catalog: str = "local"
    collections: Sequence[str] | None = None
    model: str = DEFAULT_MODEL
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    resolution: float = 10.0
    #: Skip tiles the binary patch classifier is sure hold no agriculture (:mod:`cropcore.patches.gate`; off:
    #: its measured recall is below 0.99).
    skip_non_agri: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "aoi", AOI.parse(self.aoi))


@dataclass
class RunResult:
    """The outputs of :func:`run`."""

    params: RunParams
    search: SearchResult
    axis: pd.DatetimeIndex
    reflectance: xr.DataArray  # (time, band, y, x) on the model's time axis, lazy
    prediction: xr.Dataset  # class, class_raw, confidence, cropland on the cube's grid (see predict_map)
    meta: ModelMeta
    failures: list[AssetFailure]
    timings: dict[str, float] = field(default_factory=dict)
    #: search -> infer after :func:`run`, and the write too after :func:`export_run` (per km² of the AOI)
    energy: EnergyRecord = field(default_factory=lambda: not_measured("the run was not tracked"))
    #: With ``params.skip_non_agri``: the skipped tiles and why (:meth:`cropcore.patches.gate.Gate.manifest`)
    gate: dict[str, Any] | None = None

    @property
    def decision(self) -> Decision:
        """How the map was derived from the model's probabilities (calibration, minimum confidence)."""
        return Decision.for_model(self.meta, self.params.inference.min_confidence)

    def with_min_confidence(self, value: float) -> RunResult:
        """This run with pixels below another minimum confidence (0-1) marked uncertain, without re-running."""
        params = replace(self.params, inference=replace(self.params.inference, min_confidence=value))
        return replace(self, params=params, prediction=with_min_confidence(self.prediction, value),
                       timings=dict(self.timings))

    def manifest(self) -> dict[str, Any]:
        """What produced this map: scenes, model and checksum, parameters, calibration, versions, time, energy,
        failures."""
        params = {k: v for k, v in asdict(self.params).items() if k not in ("aoi", "inference")}
        return {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "aoi": self.params.aoi.__geo_interface__,
            "parameters": {**params, **asdict(self.params.inference)},
            "catalog_url": self.search.url,
            "items": [item.id for item in latest_processing(self.search.items)],  # the scenes mapped
            "time_axis": [t.strftime("%Y-%m-%d") for t in self.axis],
            "model": {"name": self.meta.name, "architecture": self.meta.architecture, "sha256": self.meta.sha256},
            "calibration": self.decision.manifest(),
            "unreadable_assets": [asdict(f) for f in self.failures],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "energy": self.energy.manifest(),
            **({"gate": self.gate} if self.gate is not None else {}),
            "versions": {p: version(p) for p in ("cropcore", "torch", "odc-stac", "rasterio", "pystac-client")},
        }


def season_axis(meta: ModelMeta, start: DateLike, end: DateLike) -> pd.DatetimeIndex:
    """The model's monthly time axis for the season that contains ``start``.

    A model trained on months ``M11 .. M10`` classifies one November-to-October season: the season whose
    October is the first one on or after ``start`` (so 2020-11-01 and 2021-03-01 both give Nov 2020 – Oct
    2021).
    """
    steps = meta.time_axis.steps
    if meta.time_axis.kind != "season_months" or not steps:
        raise ConfigError(f"model {meta.name!r} has no monthly season axis; cannot build its input")
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


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc only).

    A run frees hundreds of MB from many threads; glibc keeps most of it in per-thread arenas, so a
    long-lived process (the dashboard) would grow by tens of MB per run without this.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass
class Season:
    """The preprocessed monthly reflectance of an AOI for a model's season, and how it was obtained."""

    found: SearchResult
    axis: pd.DatetimeIndex
    reflectance: xr.DataArray  # (time, band, y, x), the model's bands in its order
    failures: list[AssetFailure]
    loaded: xr.DataArray  # the DNs it is computed from (time, band, y, x), SCL included where the scenes have it


def load_season(params: RunParams, meta: ModelMeta, *, progress: Progress | None = None,
                timings: dict[str, float] | None = None) -> Season:
    """Search, load and preprocess ``params.aoi`` onto ``meta``'s season axis (the input of :func:`run`)."""
    report = progress or silent
    timings = {} if timings is None else timings
    axis = season_axis(meta, params.start, params.end)
    season_end = (axis[-1] + pd.offsets.MonthEnd(1)).strftime("%Y-%m-%d")

    t0 = time.perf_counter()
    report(0.0, f"searching scenes for {axis[0]:%b %Y} – {axis[-1]:%b %Y}")
    found = search_items(params.aoi, (axis[0].strftime("%Y-%m-%d"), season_end), max_cloud=params.max_cloud,
                         catalog=params.catalog, collections=params.collections)
    timings["search"] = time.perf_counter() - t0
    level_1c = [item.id for item in found.items if item.properties.get("s2:product_type") == "S2MSI1C"
                or item.properties.get("processing:level") == "L1C"]
    if level_1c:
        raise ConfigError(f"{', '.join(level_1c)} are Level-1C (top of atmosphere); the crop models need Level-2A "
                          "surface reflectance: search Level-2A collections only, or add the Level-2A products instead")

    t0 = time.perf_counter()
    report(0.33, f"loading {len(found.items)} scenes")
    bands = list(meta.bands)
    has_scl = all(asset_key(item, "SCL") is not None for item in found.items)  # "SCL", "scl", "SCL_20m", ...
    loaded = load_cube(found.items, [*bands, "SCL"] if has_scl else bands, aoi=params.aoi,
                       resolution=params.resolution, chunks=cube_chunks(params.inference))
    timings["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report(0.66, "compositing and gap filling")
    refl = preprocess(loaded.cube, freq="monthly", axis=axis).sel(band=bands)
    if refl.nbytes < PERSIST_BYTES:  # small AOIs: read once here, reuse for the plots; large ones stay lazy
        (values,) = compute(refl.data, progress=span(report, 0.66, 1.0, "compositing: "))
        refl = refl.copy(data=values)
    timings["preprocess"] = time.perf_counter() - t0
    return Season(found, axis, refl, loaded.failures, loaded.cube)


def device_plan(season: Season, meta: ModelMeta, options: InferenceOptions) -> ChunkPlan | None:
    """How to preprocess ``season`` on the inference device (:attr:`InferenceOptions.preprocess_on`), or None to
    use its reflectance as computed on the CPU."""
    if options.preprocess_on == "cpu":
        return None
    if options.preprocess_on == "auto":
        lazy = isinstance(season.reflectance.data, da.Array)
        if not lazy or options.cluster_address() is not None or resolve_devices(options.devices) == ["cpu"]:
            return None
    return plan_chunks(season.loaded, axis=season.axis, bands=list(meta.bands))


def run(
    params: RunParams, *, progress: Progress | None = None, model: tuple[nn.Module, ModelMeta] | None = None,
    workdir: Path | None = None,
) -> RunResult:
    """Search, load, preprocess (:func:`load_season`) and classify; ``model`` may pass a loaded ``(model, meta)``.

    With ``workdir`` the map is written there block by block (:class:`~cropcore.inference.sinks.GeoTiffSink`)
    and read back lazily, so memory does not grow with the map; otherwise it is kept in memory.
    """
    from cropcore.inference.predict import predict_map
    from cropcore.inference.sinks import GeoTiffSink

    report = progress or silent
    timings: dict[str, float] = {}
    net, meta = model or load_checkpoint(params.model)
    with EnergyMeter("search", "load", "preprocess", "infer") as meter:
        season = load_season(params, meta, progress=span(report, 0.0, 0.3, ""), timings=timings)
        refl = season.reflectance

        gate = None
        if params.skip_non_agri:
            from cropcore.patches.gate import non_agri_gate

            t0 = time.perf_counter()
            report(0.3, "scoring tiles for the agricultural gate")
            season_end = (season.axis[-1] + pd.offsets.MonthEnd(1)).strftime("%Y-%m-%d")
            gate = non_agri_gate(season.found.items, params.aoi, season.axis[0].strftime("%Y-%m-%d"), season_end,
                                 refl, resolution=params.resolution)
            timings["gate"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        sink = None
        if workdir is not None:
            sink = GeoTiffSink(workdir, crs=refl.rio.crs, transform=refl.rio.transform(), height=refl.sizes["y"],
                               width=refl.sizes["x"])
        plan = device_plan(season, meta, params.inference)
        prediction = predict_map(refl if plan is None else season.loaded, net, meta=meta, options=params.inference,
                                 sink=sink, progress=span(report, 0.3, 1.0, "classifying: "), plan=plan,
                                 skip=None if gate is None else gate.mask())
        timings["infer"] = time.perf_counter() - t0
    release_memory()
    report(1.0, "done")
    return RunResult(params, season.found, season.axis, refl, prediction, meta, season.failures, timings,
                     meter.record.per(area_km2=params.aoi.area_km2, images=1, image_kind="map"),
                     None if gate is None else gate.manifest())


def export_run(result: RunResult, out: Path, *, name: str = "cropmap") -> dict[str, Path]:
    """Write the product (:func:`~cropcore.products.product.write_product`) of a run into ``out``.

    The manifest, written with the product, has the time and energy of the stages before the write (as its
    ``timings_s``); afterwards ``result.energy`` and ``result.timings`` include the write.
    """
    from cropcore.products.product import write_product

    t0 = time.perf_counter()
    with EnergyMeter("write") as meter:
        paths = write_product(result.prediction, result.meta, out, manifest=result.manifest(),
                              aoi=result.params.aoi, name=name)
    result.timings["write"] = time.perf_counter() - t0
    result.energy = result.energy.plus(meter.record).per(area_km2=result.params.aoi.area_km2, images=1,
                                                          image_kind="map")
    return paths
