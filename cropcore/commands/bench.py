"""``cropcore bench load|model|infer|gpu|parcels|patches|gate``: run a benchmark script of the source tree
(``benchmarks/``)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from cropcore.errors import ConfigError
from cropcore.settings import PROJECT_ROOT

BENCHMARKS = ("load", "model", "infer", "gpu", "parcels", "patches", "gate")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` command."""
    parser = sub.add_parser("bench", help="run a benchmark (results saved under benchmarks/results/)")
    parser.add_argument("name", choices=BENCHMARKS)
    parser.add_argument("options", nargs=argparse.REMAINDER, help="passed to the benchmark script (--help)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``benchmarks/bench_<name>.py`` with this interpreter; return its exit code."""
    script = PROJECT_ROOT / "benchmarks" / f"bench_{args.name}.py"
    if not script.is_file():
        raise ConfigError(f"{script.name} is not here: benchmarks run from a clone of the cropcore repository")
    return subprocess.call([sys.executable, str(script), *args.options])
