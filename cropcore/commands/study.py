"""``cropcore study --config configs/study_generalisation.yaml``: the generalisation study of the model card.

Trains every model of the study on every split (by sample, several seeds; leave one region out) beside a
RandomForest, prints the tables, saves all results as JSON and rewrites the study's tables in the model card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``study`` sub-command."""
    parser = subparsers.add_parser("study", help="compare models by sample and leave-one-region-out splits")
    parser.add_argument("--config", required=True, help="study YAML (see configs/study_generalisation.yaml)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: docs/results/<name>.json)")
    parser.add_argument("--card", type=Path, default=None,
                        help="model card whose study tables are rewritten (default: docs/MODEL_CARD.md)")
    parser.add_argument("--no-card", action="store_true", help="do not touch the model card")
    parser.add_argument("--models", nargs="+", default=None, metavar="LABEL",
                        help="run only these models of the study (their labels in the YAML)")
    parser.add_argument("--epochs", type=int, default=None, help="override max_epochs (quick checks only)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="run only the I-th of N shares of the runs (0-based), e.g. one process per core; "
                             "finish with a run without --shard, which reuses them and writes the tables; "
                             "each share uses one thread")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the study, save the results and tables."""
    from dataclasses import replace

    from cropcore.settings import PROJECT_ROOT
    from cropcore.training.study import load_study, only, run_study
    from cropcore.training.study_tables import tables, write_into

    study = load_study(args.config)
    if args.epochs:
        study = replace(study, epochs=args.epochs)
    if args.models:
        study = only(study, args.models)
    if args.shard:
        from cropcore.errors import ConfigError

        try:
            index, count = (int(v) for v in args.shard.split("/"))
        except ValueError:
            raise ConfigError(f"--shard takes I/N, e.g. 0/2; got {args.shard!r}") from None
        if not 0 <= index < count:
            raise ConfigError(f"--shard {args.shard}: I must be in 0..N-1")
        import torch

        torch.set_num_threads(1)  # one core per share: small models do not gain from threads, and N threaded
        run_study(study, shard=(index, count))  # processes on N cores would oversubscribe them
        return 0
    records = run_study(study)
    text = tables(records, variant_base=study.variant_base)
    print(text)
    out = args.out or PROJECT_ROOT / "docs" / "results" / f"{study.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"study": study.name, "epochs_override": study.epochs, "runs": records}, indent=1,
                              default=float))
    print(f"results written to {out}")
    if not args.no_card:
        card = args.card or PROJECT_ROOT / "docs" / "MODEL_CARD.md"
        write_into(card, study.name, text)
        print(f"tables written into {card}")
    return 0
