"""``cropcore train --config configs/<name>.yaml``: train a model, compare with a RandomForest, save it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser("train", help="train a model from a YAML config")
    parser.add_argument("--config", required=True, help="YAML training config (see configs/)")
    parser.add_argument("--resume", default=None, help="Lightning checkpoint to resume from")
    parser.add_argument("--devices", default="auto", help="devices for Lightning (default: auto)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run training and print the held-out comparison."""
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
