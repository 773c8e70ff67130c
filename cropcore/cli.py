"""Command-line entry point: ``python -m cropcore <command> ...``.

Each sub-command lives in ``cropcore.commands.<name>`` and exposes ``register(subparsers)``, which adds
its parser and sets ``func(args) -> int``. Errors print one line on stderr and exit 2 (bad input), 3 (no
scenes) or 4 (STAC API unavailable), 1 for an unexpected error and 130 when interrupted; ``--verbose``
shows the details.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from cropcore import commands
from cropcore.errors import CatalogUnavailableError, CropcoreError, NoItemsFoundError

EXIT_USER_ERROR = 2
EXIT_NO_SCENES = 3
EXIT_CATALOG_UNAVAILABLE = 4
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a reader that left
EXIT_INTERNAL_ERROR = 1


def exit_code(exc: CropcoreError) -> int:
    """2: bad input or setting; 3: no scenes matched; 4: the STAC API is unavailable."""
    if isinstance(exc, NoItemsFoundError):
        return EXIT_NO_SCENES
    if isinstance(exc, CatalogUnavailableError):
        return EXIT_CATALOG_UNAVAILABLE
    return EXIT_USER_ERROR


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="cropcore", description="Crop mapping from Sentinel-2 time series.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show details and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in commands.__all__:
        importlib.import_module(f"cropcore.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except CropcoreError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"cropcore {args.command}: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print(f"cropcore {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (`... | head`): stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # a bug or an unforeseen fault: one line, the traceback with --verbose
        if args.verbose:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"cropcore {args.command}: unexpected error: {type(exc).__name__}: {first} (run with --verbose "
              "for details and report it)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
