"""``cropcore predict``: a crop map over an AOI, written as Cloud-Optimized GeoTIFFs; optionally per-parcel
statistics of a parcel file (``--parcels``) and the map as field polygons (``--polygons``, ``--mmu``)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cropcore.commands.search import add_aoi_arguments, read_aoi
from cropcore.energy import format_energy
from cropcore.errors import ConfigError
from cropcore.inference.options import InferenceOptions, check_min_confidence

if TYPE_CHECKING:
    from tqdm import tqdm

    from cropcore.inference.calibrate import Decision
    from cropcore.pipeline import RunResult
    from cropcore.products.parcels import ParcelFile

DEFAULTS = InferenceOptions()


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command."""
    parser = sub.add_parser("predict", help="map crops over an AOI and write COGs")
    add_aoi_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="crop-map GeoTIFF to write (e.g. map.tif)")
    parser.add_argument("--catalog", default="local", help="local, earth-search, planetary-computer or a URL")
    parser.add_argument("--collections", nargs="+", help="collection ids (default: the catalog's L2A ones)")
    parser.add_argument("--max-cloud", type=float, default=80.0, help="maximum scene cloud cover, percent")
    parser.add_argument("--model", help="checkpoint: a shipped one's name, your own (cropcore train --labels) or a "
                                         "file (default: the dashboard's default model)")
    parser.add_argument("--tile", type=int, default=DEFAULTS.tile, help="tile size in pixels")
    parser.add_argument("--overlap", type=int, default=DEFAULTS.overlap, help="tile overlap in pixels")
    parser.add_argument("--strip", type=int, default=DEFAULTS.strip,
                        help="width in pixels of the column strips tiles are read in (bounds memory)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="tiles per batch")
    parser.add_argument("--devices", default=DEFAULTS.devices, help="auto, cpu, cpu:N or cuda:0,cuda:1")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                        help="autocast precision (auto: bf16/fp16 on CUDA; bf16 on CPUs with native bf16, else fp32)")
    parser.add_argument("--min-confidence", type=float, metavar="P",
                        help="0-1: pixels whose calibrated confidence is below P are mapped as uncertain "
                             "(default: the checkpoint's calibration; 0 for an uncalibrated checkpoint)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="dask scheduler (tcp://host:8786) whose workers run the map's strips (default: "
                             "CROPCORE_DASK_SCHEDULER when it is an address, else this machine; docs/SCALING.md)")
    parser.add_argument("--parcels", type=Path, metavar="FILE",
                        help="fields (GeoJSON, GeoPackage, GeoParquet or zipped Shapefile): per-parcel statistics "
                             "are written beside --out as <name>_parcels.gpkg and <name>_parcels.parquet")
    parser.add_argument("--polygons", type=Path, metavar="FILE",
                        help="write the map as field polygons too: .gpkg, .parquet or .geojson")
    parser.add_argument("--mmu", type=float, metavar="HA",
                        help="minimum mapping unit of --polygons in hectares: smaller specks are merged into their "
                             "largest neighbour (default 0.1, cropcore.products.polygons.DEFAULT_MMU_HA)")
    parser.add_argument("--skip-non-agri", action="store_true",
                        help="do not segment 1.2 km tiles the agricultural patch classifier is sure hold no "
                             "agriculture; their pixels are no data (255) and the manifest lists them. Off by "
                             "default: its measured recall is below 0.99 (docs/MODEL_CARD_PATCHES.md#gate)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline with a progress bar and write the outputs."""
    from tqdm import tqdm

    from cropcore.pipeline import DEFAULT_MODEL, RunParams, export_run
    from cropcore.pipeline import run as run_pipeline

    if args.out.suffix.lower() not in (".tif", ".tiff"):
        raise ConfigError(f"--out must name a .tif file, got {args.out}")
    if args.min_confidence is not None:
        try:
            check_min_confidence(args.min_confidence)
        except ConfigError:
            raise ConfigError(f"--min-confidence must be between 0 and 1, got {args.min_confidence}") from None
    parcels = check_vector_args(args)
    options = InferenceOptions(tile=args.tile, overlap=args.overlap, strip=args.strip, batch_size=args.batch_size,
                               devices=args.devices, amp=True if args.precision == "auto" else args.precision,
                               min_confidence=args.min_confidence, scheduler=args.scheduler)
    params = RunParams(aoi=read_aoi(args), start=args.start, end=args.end, max_cloud=args.max_cloud,
                       catalog=args.catalog, collections=args.collections,
                       model=args.model or DEFAULT_MODEL, inference=options, skip_non_agri=args.skip_non_agri)
    if args.skip_non_agri:
        from cropcore.patches.gate import RECALL_WARNING

        if options.cluster_address() is not None:
            raise ConfigError("--skip-non-agri runs on this machine only: leave out --scheduler (and unset "
                              "CROPCORE_DASK_SCHEDULER)")

        print(f"warning: {RECALL_WARNING}", file=sys.stderr)
    bar = tqdm(total=100, unit="%", file=sys.stderr, disable=None, bar_format="{l_bar}{bar}| {elapsed}")
    # the map goes to disk row by row and the COGs are made from there: memory does not grow with the AOI
    with bar, tempfile.TemporaryDirectory(prefix="cropcore-predict-") as workdir:
        def progress(fraction: float, message: str) -> None:
            bar.set_description_str(message[:60])
            bar.update(round(100 * fraction) - bar.n)

        result = run_pipeline(params, progress=progress, workdir=Path(workdir))
        bar.set_description_str("writing")
        paths = export_run(result, args.out.parent, name=args.out.stem)
        extra, lines = vector_outputs(result, args, parcels, bar)
    for failure in result.failures:
        print(f"warning: could not read {failure.item_id}/{failure.asset}: {failure.reason}", file=sys.stderr)
    print(f"{len(result.search.items)} scenes, season {result.axis[0]:%Y-%m} to {result.axis[-1]:%Y-%m}, "
          f"model {result.meta.name}")
    print(summary(paths["areas"], result.decision))
    if result.gate is not None:
        gate = result.gate
        print(f"      gate: {gate['skipped_tiles']} of {gate['tiles']} tiles skipped (agricultural probability <= "
              f"{gate['threshold']:.2f}, {gate['model']}); their {gate['skipped_pixels']} pixels are no data")
    for line in lines:
        print(line)
    for kind, path in {**paths, **extra}.items():
        print(f"{kind:>10}: {path}")
    print("   timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
    print(f"    {format_energy(result.energy)}")
    return 0


def check_vector_args(args: argparse.Namespace) -> ParcelFile | None:
    """Check --parcels, --polygons and --mmu before the run (a bad one fails in a second, not after the map)."""
    from cropcore.products.parcels import open_parcels
    from cropcore.products.polygons import DEFAULT_MMU_HA, FORMATS, mmu_pixels

    args.mmu = DEFAULT_MMU_HA if args.mmu is None else args.mmu
    if args.polygons is not None and args.polygons.suffix.lower() not in FORMATS:
        raise ConfigError(f"--polygons must name a .gpkg, .parquet or .geojson file, got {args.polygons}")
    try:
        mmu_pixels(args.mmu, 100.0)
    except ConfigError:
        raise ConfigError(f"--mmu must be 0 or more hectares, got {args.mmu}") from None
    return open_parcels(args.parcels) if args.parcels is not None else None


def vector_outputs(result: RunResult, args: argparse.Namespace, parcels: ParcelFile | None,
                   bar: tqdm) -> tuple[dict[str, Path], list[str]]:
    """Write the parcel statistics and the polygons asked for; their paths by kind, and one line about each."""
    from cropcore.products.parcels import MapLayers, parcel_stats
    from cropcore.products.polygons import vectorize, write_polygons

    out: dict[str, Path] = {}
    lines: list[str] = []
    if parcels is not None:
        bar.set_description_str("parcels")
        stem = args.out.parent / f"{args.out.stem}_parcels"
        done = parcel_stats(parcels, MapLayers.from_prediction(result.prediction, result.reflectance,
                                                               result.meta.class_names),
                            {"gpkg": stem.with_suffix(".gpkg"), "parquet": stem.with_suffix(".parquet")})
        lines.append(f"   parcels: {done.line()} ({done.seconds:.1f} s)")
        out.update({f"parcels_{k}": p for k, p in done.paths.items()})
    if args.polygons is not None:
        bar.set_description_str("polygons")
        gdf, made = vectorize(result.prediction, result.meta.class_names, mmu_ha=args.mmu)
        out["polygons"] = write_polygons(gdf, args.polygons)
        lines.append(f"  polygons: {made.line()}")
    return out, lines


def summary(areas_csv: Path, decision: Decision) -> str:
    """One line: the uncertain share of the mapped area (and its threshold), and the cropland share."""
    import pandas as pd

    areas = pd.read_csv(areas_csv).set_index("kind")
    source = {"user": "--min-confidence", "checkpoint": "the checkpoint's", "default": "uncalibrated checkpoint"}
    line = (f"uncertain: {areas.loc['uncertain', 'percent']:.1f} % of the mapped area (confidence below "
            f"{decision.min_confidence:.2f}, {source[decision.min_confidence_source]})")
    if "total" in areas.index:
        line += f"; cropland: {areas.loc['total', 'percent']:.1f} %"
    return line
