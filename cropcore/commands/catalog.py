"""``cropcore catalog build|serve|stop|status``: the embedded STAC API."""

from __future__ import annotations

import argparse
import json
import time


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``catalog`` command."""
    parser = sub.add_parser("catalog", help="build, serve, stop or inspect the embedded STAC API")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build COGs and STAC items from the sample data")
    build.add_argument("--force", action="store_true", help="rebuild even if already built")
    serve = actions.add_parser("serve", help="start PostgreSQL (Unix socket only) + stac-fastapi-pgstac on 127.0.0.1")
    serve.add_argument("--force-build", action="store_true", help="rebuild the catalog first")
    actions.add_parser("stop", help="stop the processes that `serve` started")
    actions.add_parser("status", help="print the catalog state as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Carry out one catalog action."""
    from cropcore.stac import server as stac_server
    from cropcore.stac.build import build_catalog

    if args.action == "build":
        t0 = time.perf_counter()
        stac_dir = build_catalog(stac_server.layout().catalog, force=args.force)
        print(f"catalog ready in {stac_dir} ({time.perf_counter() - t0:.1f} s)")
    elif args.action == "serve":
        t0 = time.perf_counter()
        url = stac_server.serve(force_build=args.force_build)
        print(f"STAC API ready at {url} ({time.perf_counter() - t0:.1f} s); stop it with "
              "`python -m cropcore catalog stop`")
    elif args.action == "stop":
        stopped = stac_server.stop()
        print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    else:
        print(json.dumps(stac_server.status(), indent=2))
    return 0
