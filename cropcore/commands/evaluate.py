"""``cropcore evaluate --checkpoint CKPT --data PATH``: score a checkpoint on labelled point data.

``PATH`` is a WorldCereal extraction (long or wide parquet) or a dl4sits CSV; for a patch classifier
(``patch_*``, :mod:`cropcore.patches`) the BigEarthNet npz or a folder of patch folders. ``--split test`` keeps only
the sample ids the checkpoint held out in training (the model card's numbers).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    parser = subparsers.add_parser("evaluate", help="evaluate a checkpoint on labelled point data")
    parser.add_argument("--checkpoint", required=True, help="checkpoint file or shipped name")
    parser.add_argument("--data", required=True, nargs="+",
                        help="WorldCereal parquet/geoparquet or dl4sits CSV files (scored together)")
    parser.add_argument("--split", choices=("all", "test"), default="all",
                        help="'test': only the checkpoint's held-out sample ids")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: <data stem>_eval.json)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Evaluate, print and save the report."""
    from cropcore.patches.checkpoint import is_patch_checkpoint
    from cropcore.settings import home
    from cropcore.training import evaluate_file, format_report

    out = args.out or home() / "eval" / f"{Path(args.data[0]).stem}_{Path(str(args.checkpoint)).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if is_patch_checkpoint(args.checkpoint):
        from cropcore.patches.evaluate import evaluate_patches, format_patch_report

        report = evaluate_patches(args.checkpoint, args.data, split=args.split, roc_path=out.with_suffix(".png"))
        text = format_patch_report(report)
    else:
        report = evaluate_file(args.checkpoint, args.data, split=args.split)
        text = format_report(report)
    out.write_text(json.dumps(report, indent=2))
    print(text)
    print(f"report written to {out}")
    return 0
