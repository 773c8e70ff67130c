"""STAC: searching any STAC API (:mod:`.catalog`), building (:mod:`.build`) and serving (:mod:`.server`) the
embedded catalog of the sample scenes."""

from cropcore.stac.build import build_catalog
from cropcore.stac.catalog import CATALOG_NAMES, SearchResult, items_table, resolve_catalog, search_items
from cropcore.stac.server import api_url, serve, status, stop

__all__ = [
    "CATALOG_NAMES",
    "SearchResult",
    "api_url",
    "build_catalog",
    "items_table",
    "resolve_catalog",
    "search_items",
    "serve",
    "status",
    "stop",
]
