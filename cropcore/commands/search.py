"""``cropcore search``: list the Sentinel-2 scenes over an AOI."""

from __future__ import annotations

import argparse
from pathlib import Path

from cropcore.aoi import AOI, MAX_GEOJSON_BYTES
from cropcore.errors import InvalidAOIError


def add_aoi_arguments(parser: argparse.ArgumentParser) -> None:
    """``--aoi FILE.geojson`` or ``--bbox W S E N``, plus ``--start``/``--end``."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--aoi", type=Path, help="GeoJSON file (Polygon, Feature or FeatureCollection)")
    where.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"), help="lon/lat bbox")
    parser.add_argument("--start", required=True, help="first date, YYYY-MM-DD")
    parser.add_argument("--end", required=True, help="last date, YYYY-MM-DD")


def read_aoi(args: argparse.Namespace) -> AOI:
    """The AOI given on the command line (a GeoJSON file or a bbox), parsed."""
    if args.bbox:
        return AOI.parse(args.bbox)
    try:
        size = args.aoi.stat().st_size
        if size > MAX_GEOJSON_BYTES:
            raise InvalidAOIError(f"the AOI file {args.aoi} is {size / 2**20:.1f} MB, more than the limit of "
                                  f"{MAX_GEOJSON_BYTES / 2**20:.0f} MB: simplify the polygon")
        text = args.aoi.read_text()
    except UnicodeDecodeError:
        raise InvalidAOIError(f"the AOI file {args.aoi} is not text: give a GeoJSON file") from None
    except OSError as exc:
        raise InvalidAOIError(f"cannot read the AOI file {args.aoi}: {exc.strerror}") from None
    return AOI.parse(text)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``search`` command."""
    parser = sub.add_parser("search", help="search Sentinel-2 scenes over an AOI")
    add_aoi_arguments(parser)
    parser.add_argument("--catalog", default="local",
                        help="local, earth-search, planetary-computer or a STAC API URL (default: local)")
    parser.add_argument("--collections", nargs="+", help="collection ids (default: the catalog's L2A ones)")
    parser.add_argument("--max-cloud", type=float, help="maximum cloud cover, percent")
    parser.add_argument("--limit", type=int, default=500, help="maximum number of scenes")
    parser.add_argument("--json", action="store_true", help="print the ItemCollection as GeoJSON")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search and print a table (or GeoJSON)."""
    import json

    from cropcore.stac.catalog import search_items

    result = search_items(read_aoi(args), (args.start, args.end), collections=args.collections,
                          max_cloud=args.max_cloud, limit=args.limit, catalog=args.catalog,
                          timeout=args.timeout)
    if args.json:
        print(json.dumps(result.items.to_dict()))
    else:
        print(result.table.to_string(index=False))
        print(f"{len(result.items)} scenes from {result.url}")
    return 0
