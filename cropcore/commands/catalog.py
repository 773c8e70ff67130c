"""``cropcore catalog build|serve|stop|status|add|list|remove``: the embedded STAC API and the user's scenes."""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from cropcore.errors import ConfigError


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
    add = actions.add_parser("add", help="index your own Sentinel-2 products (SAFE folders, folders of band files)")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="SAFE folder or folder of per-band files")
    folder = add.add_argument_group("for per-band folders whose names do not tell")
    folder.add_argument("--datetime", type=_utc_time, help="acquisition time, e.g. 2021-03-15T10:50:29 (UTC)")
    folder.add_argument("--level", choices=("L2A", "L1C"), help="processing level")
    folder.add_argument("--baseline", type=_baseline, help="processing baseline, e.g. 05.00 (04.00 on: DN offset)")
    folder.add_argument("--cloud-cover", type=float, help="cloud cover, percent (default: from the SCL file)")
    actions.add_parser("list", help="list the scenes added with `catalog add`")
    remove = actions.add_parser("remove", help="remove added scenes (their COGs too)")
    remove.add_argument("ids", nargs="+", metavar="ID", help="item id, as `catalog list` shows it")
    parser.set_defaults(func=run)


def _utc_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time such as 2021-03-15T10:50:29") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _baseline(text: str) -> str:
    if not re.fullmatch(r"\d{2}\.\d{2}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a processing baseline such as 05.00 or 02.14")
    return text


def _add(args: argparse.Namespace) -> None:
    from cropcore.stac.add import Stated, add_products
    from cropcore.stac.server import api_url

    if args.cloud_cover is not None and not 0 <= args.cloud_cover <= 100:
        raise ConfigError(f"--cloud-cover is a percentage in [0, 100], got {args.cloud_cover:g}")
    t0 = time.perf_counter()
    added, loaded = add_products(args.paths, Stated(args.datetime, args.level, args.baseline, args.cloud_cover))
    for entry in added:
        props = entry.item.properties
        cloud = props.get("eo:cloud_cover")
        bands = [k for k in entry.item.assets if k != "thumbnail"]
        print(f"added {entry.item.id}: {props['processing:level']}, {entry.item.datetime:%Y-%m-%d}, tile "
              f"{props['s2:mgrs_tile']}, cloud {'?' if cloud is None else f'{cloud:g}%'}, {len(bands)} bands "
              f"({' '.join(bands)}), baseline {props['s2:processing_baseline']}")
        for note in entry.notes:
            print(f"  note: {note}")
    where = (f"the catalog at {api_url()} finds them now" if loaded else
             "the catalog is not running: `python -m cropcore catalog serve` loads them")
    print(f"{len(added)} scene(s) added in {time.perf_counter() - t0:.1f} s; {where}")


def _list() -> None:
    from cropcore.stac.add import list_items

    items = list_items()
    if not items:
        print("no scenes added yet: `python -m cropcore catalog add PATH` adds one")
        return
    rows = [(i.id, f"{i.datetime:%Y-%m-%d %H:%M}", i.properties.get("s2:mgrs_tile", ""),
             i.properties.get("processing:level", ""),
             "?" if i.properties.get("eo:cloud_cover") is None else f"{i.properties['eo:cloud_cover']:g}%",
             i.properties.get("cropcore:source", "")) for i in items]
    rows.insert(0, ("id", "date (UTC)", "tile", "level", "cloud", "source"))
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[5])


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
    elif args.action == "status":
        print(json.dumps(stac_server.status(), indent=2))
    elif args.action == "add":
        _add(args)
    elif args.action == "list":
        _list()
    else:
        from cropcore.stac.add import remove_items

        loaded = remove_items(args.ids)
        print(f"removed {', '.join(args.ids)}" + ("" if loaded else " (the catalog is not running)"))
    return 0
