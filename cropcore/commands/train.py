"""``cropcore train``: train a model from a YAML config (``--config``), or fine-tune the default model on your own
labels (``--labels FILE --class-column NAME --season YEAR``); either way compared with a RandomForest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cropcore.errors import ConfigError

#: Options that only apply to training on your own labels.
LABEL_OPTIONS = ("class_column", "season", "name", "crop_classes", "epochs", "overwrite")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser("train", help="train a model from a YAML config, or on your own labels")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="YAML training config (see configs/)")
    source.add_argument("--labels", type=Path,
                        help="your labels: GeoJSON, GeoPackage or GeoParquet of points or polygons (parcels)")
    parser.add_argument("--resume", default=None, help="--config: Lightning checkpoint to resume from")
    parser.add_argument("--devices", default="auto", help="--config: devices for Lightning (default: auto)")
    own = parser.add_argument_group("training on your own labels (--labels)")
    own.add_argument("--class-column", help="the column of the label file that holds the classes")
    own.add_argument("--season", type=int, metavar="YEAR",
                     help="the year the season ends (the default model's season: 2021 = Nov 2020 - Oct 2021)")
    own.add_argument("--catalog", default="local", help="local, earth-search, planetary-computer or a URL")
    own.add_argument("--collections", nargs="+", help="collection ids (default: the catalog's L2A ones)")
    own.add_argument("--max-cloud", type=float, default=80.0, help="maximum scene cloud cover, percent")
    own.add_argument("--name", help="name of the new model (default: <file>_<column>_<season>)")
    own.add_argument("--crop-classes", nargs="+", metavar="CLASS",
                     help="which of your classes are crops (default: not said; no cropland layer)")
    own.add_argument("--epochs", type=int, help="training epochs (default 30)")
    own.add_argument("--overwrite", action="store_true", help="replace an existing model of the same name")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Train from the config or the labels and print the held-out comparison."""
    if args.labels is not None:
        return train_labels(args)
    given = [f"--{o.replace('_', '-')}" for o in LABEL_OPTIONS if getattr(args, o) not in (None, False)]
    if given:
        raise ConfigError(f"{', '.join(given)} only apply with --labels")
    from cropcore.patches.config import is_patch_config

    if is_patch_config(args.config):
        return train_patches(args)
    from cropcore.training import format_report, load_config, run

    results = run(load_config(args.config), resume=args.resume, devices=args.devices)
    titles = {"network": "network (held-out real points)", "random_forest": "random_forest (held-out real points)",
              "network_patches": f"network (held-out {results.get('patch_data')}, pixel metrics)"}
    for name, title in titles.items():
        if name in results:
            print(f"== {title}\n{format_report(results[name])}")
    if results:
        print(f"train time {results['train_seconds']} s; split sizes {results['sizes']}")
    return 0


def train_patches(args: argparse.Namespace) -> int:
    """Cross-validate a patch classifier (``configs/patch_*.yaml``) and print mean ± sd vs the majority class."""
    from cropcore.patches.config import load_patch_config
    from cropcore.patches.train import format_results, run

    if args.resume is not None:
        raise ConfigError("--resume does not apply to patch configs (each fold trains from scratch)")
    results = run(load_patch_config(args.config), devices=1 if args.devices == "auto" else args.devices)
    if results:
        print(format_results(results))
    return 0


def train_labels(args: argparse.Namespace) -> int:
    """Fine-tune the default model on the labels with a progress bar; print the comparison and where it went."""
    from tqdm import tqdm

    from cropcore.labels import read_labels
    from cropcore.training.own_labels import comparison, default_calls, train_on_labels

    missing = [flag for flag, value in (("--class-column", args.class_column), ("--season", args.season))
               if value is None]
    if missing:
        raise ConfigError(f"--labels needs {' and '.join(missing)}")
    labels = read_labels(args.labels, args.class_column)
    options = {} if args.epochs is None else {"epochs": args.epochs}
    bar = tqdm(total=100, unit="%", file=sys.stderr, disable=None, bar_format="{l_bar}{bar}| {elapsed}")
    with bar:
        def progress(fraction: float, message: str) -> None:
            bar.set_description_str(message[:60])
            bar.update(round(100 * fraction) - bar.n)

        result = train_on_labels(labels, args.class_column, args.season, catalog=args.catalog,
                                 collections=args.collections, max_cloud=args.max_cloud, name=args.name,
                                 crop_classes=args.crop_classes, overwrite=args.overwrite, progress=progress,
                                 **options)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    sizes = result.sizes
    print(f"{result.meta.name}: {result.meta.architecture} fine-tuned from {result.default['name']} on "
          f"{sizes['train']['parcels']} labels ({sizes['train']['pixels']} pixels), best epoch chosen on "
          f"{sizes['val']['parcels']} ({sizes['val']['pixels']}), in {result.seconds:.0f} s")
    print(f"\n== F1 on the {sizes['test']['parcels']} held-out labels ({sizes['test']['pixels']} pixels): "
          "network vs RandomForest (same training pixels)")
    print(comparison(result).to_string(float_format="{:.3f}".format))
    print(f"\n== what the default model {result.default['name']} calls your held-out pixels (share of each class)")
    print(default_calls(result).to_string(float_format="{:.2f}".format))
    bbox = " ".join(f"{v:.5f}" for v in result.bbox)
    print(f"\nsaved {result.path}\nmap the labels' area with it: python -m cropcore predict --model {result.meta.name} "
          f"--bbox {bbox} --start {result.dates[0]} --end {result.dates[1]} --catalog {args.catalog} "
          f"--out {result.meta.name}.tif\n(or choose {result.meta.name} on the dashboard's Crop map page)")
    return 0
