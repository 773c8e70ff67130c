"""``cropcore predict``: a crop map over an AOI, written as Cloud-Optimized GeoTIFFs."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cropcore.commands.search import add_aoi_arguments, read_aoi
from cropcore.errors import ConfigError
from cropcore.inference.options import InferenceOptions

DEFAULTS = InferenceOptions()


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command."""
    parser = sub.add_parser("predict", help="map crops over an AOI and write COGs")
    add_aoi_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="crop-map GeoTIFF to write (e.g. map.tif)")
    parser.add_argument("--catalog", default="local", help="local, earth-search, planetary-computer or a URL")
    parser.add_argument("--collections", nargs="+", help="collection ids (default: the catalog's L2A ones)")
    parser.add_argument("--max-cloud", type=float, default=80.0, help="maximum scene cloud cover, percent")
    parser.add_argument("--model", default="tempcnn_worldcereal", help="shipped checkpoint name or file")
    parser.add_argument("--tile", type=int, default=DEFAULTS.tile, help="tile size in pixels")
    parser.add_argument("--overlap", type=int, default=DEFAULTS.overlap, help="tile overlap in pixels")
    parser.add_argument("--strip", type=int, default=DEFAULTS.strip,
                        help="width in pixels of the column strips tiles are read in (bounds memory)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="tiles per batch")
    parser.add_argument("--devices", default=DEFAULTS.devices, help="auto, cpu, cpu:N or cuda:0,cuda:1")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                        help="autocast precision (auto: bf16/fp16 on CUDA; bf16 on CPUs with native bf16, else fp32)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline with a progress bar and write the outputs."""
    from tqdm import tqdm

    from cropcore.pipeline import RunParams, export_run
    from cropcore.pipeline import run as run_pipeline

    if args.out.suffix.lower() not in (".tif", ".tiff"):
        raise ConfigError(f"--out must name a .tif file, got {args.out}")
    options = InferenceOptions(tile=args.tile, overlap=args.overlap, strip=args.strip, batch_size=args.batch_size,
                               devices=args.devices, amp=True if args.precision == "auto" else args.precision)
    params = RunParams(aoi=read_aoi(args), start=args.start, end=args.end, max_cloud=args.max_cloud,
                       catalog=args.catalog, collections=args.collections, model=args.model, inference=options)
    bar = tqdm(total=100, unit="%", file=sys.stderr, disable=None, bar_format="{l_bar}{bar}| {elapsed}")
    # the map goes to disk row by row and the COGs are made from there: memory does not grow with the AOI
    with bar, tempfile.TemporaryDirectory(prefix="cropcore-predict-") as workdir:
        def progress(fraction: float, message: str) -> None:
            bar.set_description_str(message[:60])
            bar.update(round(100 * fraction) - bar.n)

        result = run_pipeline(params, progress=progress, workdir=Path(workdir))
        bar.set_description_str("writing")
        paths = export_run(result, args.out.parent, name=args.out.stem)
    for failure in result.failures:
        print(f"warning: could not read {failure.item_id}/{failure.asset}: {failure.reason}", file=sys.stderr)
    print(f"{len(result.search.items)} scenes, season {result.axis[0]:%Y-%m} to {result.axis[-1]:%Y-%m}, "
          f"model {result.meta.name}")
    for kind, path in paths.items():
        print(f"{kind:>10}: {path}")
    print("   timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
    return 0
