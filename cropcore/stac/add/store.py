"""The user's scenes on disk and in the running catalog: add (all or nothing), list, remove.

Each item lives in ``CROPCORE_HOME/user-scenes/<item id>/`` (``item.json``, one COG per band, a quicklook),
beside ``collection.json``; the folder is the truth, and the running database is made to match it after
every change and on every ``catalog serve`` (:func:`cropcore.stac.server.load_user_items`). It is kept
apart from ``CROPCORE_HOME/catalog``, which ``catalog build`` deletes and rebuilds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pystac

from cropcore.errors import ConfigError
from cropcore.stac import server
from cropcore.stac.add.folder import Stated, read_band_folder
from cropcore.stac.add.item import build_item
from cropcore.stac.add.product import Product
from cropcore.stac.add.safe import METADATA_FILES, read_safe, safe_level
from cropcore.stac.build import validate

USER_COLLECTION = "user-s2"
#: Sentinel-2A's launch: the temporal extent of an empty user collection starts there.
S2_START = datetime(2015, 6, 23, tzinfo=UTC)


@dataclass(frozen=True)
class Added:
    """One indexed product: its item and what the user should know about it."""

    item: pystac.Item
    notes: tuple[str, ...]


def read_product(path: Path, stated: Stated) -> Product:
    """Describe the product at ``path``: a SAFE folder from its metadata, else a per-band folder."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if not path.is_dir():
        hint = "unzip it first" if path.suffix.lower() == ".zip" else "give a SAFE folder or a folder of band files"
        raise ConfigError(f"{path} is not a folder: {hint}")
    if safe_level(path):
        if stated != Stated():
            raise ConfigError(f"--datetime, --level, --baseline and --cloud-cover are for per-band folders: {path} is "
                              "a SAFE product, whose metadata gives them")
        return read_safe(path)
    if path.name.upper().endswith(".SAFE"):
        raise ConfigError(f"{path} is named like a SAFE product but has no {' or '.join(METADATA_FILES.values())}: "
                          "the download is incomplete; download or unzip it again")
    return read_band_folder(path, stated)


def scenes_dir() -> Path:
    """The folder holding the user's items (see the module docstring)."""
    return server.user_scenes_dir()


def list_items() -> list[pystac.Item]:
    """The user's items, by date."""
    items = [pystac.Item.from_file(p) for p in scenes_dir().glob("[!.]*/item.json")]
    return sorted(items, key=lambda i: (i.datetime, i.id))


def user_collection(items: list[pystac.Item]) -> pystac.Collection:
    """The ``user-s2`` collection, its extent computed from ``items``."""
    extent = pystac.Extent.from_items(items) if items else pystac.Extent(
        pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]), pystac.TemporalExtent([[S2_START, None]]))
    collection = pystac.Collection(
        id=USER_COLLECTION, title="Your Sentinel-2 scenes", license="other", extent=extent,
        description="Sentinel-2 products added with `python -m cropcore catalog add` (SAFE folders and folders of "
                    "per-band files), Level-2A and Level-1C (s2:product_type, processing:level); each item's "
                    "cropcore:source is the folder it was added from. Reflectance = DN * scale + offset of the "
                    "asset's raster:bands, read from the product.",
    )
    collection.add_link(pystac.Link("license", "https://sentinels.copernicus.eu/documents/247904/690755/"
                                    "Sentinel_Data_Legal_Notice", title="Copernicus Sentinel data terms"))
    return collection


def _sync() -> bool:
    """Rewrite ``collection.json`` from the items on disk and make the running database match."""
    collection = user_collection(list_items())
    validate(collection)
    target = scenes_dir() / "collection.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(collection.to_dict(include_self_link=False)))
    tmp.replace(target)
    return server.load_user_items(scenes_dir())


def _swap(root: Path, staging: Path, item_ids: list[str]) -> bool:
    """Move the staged items in place (old versions aside into ``staging``), then sync; undone on failure."""
    try:
        for item_id in item_ids:
            if (root / item_id).exists():
                (root / item_id).rename(staging / f"{item_id}.old")
            (staging / item_id).rename(root / item_id)
        return _sync()
    except BaseException:
        for item_id in item_ids:
            if not (staging / item_id).exists() and (root / item_id).exists():
                shutil.rmtree(root / item_id)
            if (staging / f"{item_id}.old").exists():
                (staging / f"{item_id}.old").rename(root / item_id)
        with contextlib.suppress(Exception):  # the database may be what failed: `serve` syncs it again
            _sync()
        raise


def add_products(paths: list[Path], stated: Stated | None = None) -> tuple[list[Added], bool]:
    """Index the products at ``paths``, all or nothing: every product is read and checked, converted and
    validated before any is put in place. Adding a product again replaces it.

    Returns what was added and whether the running catalog was updated (False: not running; ``serve``
    loads the items).
    """
    products = [read_product(Path(os.path.abspath(p)), stated or Stated()) for p in paths]
    ids = [p.item_id for p in products]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ConfigError(f"the same product is given twice: {', '.join(twice)}")
    root = scenes_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        added = []
        for product in products:
            folder = staging / product.item_id
            folder.mkdir()
            item = build_item(product, folder, root / product.item_id)
            validate(item)
            item.collection_id = USER_COLLECTION
            (folder / "item.json").write_text(json.dumps(item.to_dict(include_self_link=False)))
            added.append(Added(item, product.notes))
        loaded = _swap(root, staging, ids)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return added, loaded


def remove_items(item_ids: list[str]) -> bool:
    """Delete the user's items ``item_ids`` (COGs included) from disk and from the running catalog."""
    root = scenes_dir()
    unknown = [i for i in item_ids if Path(i).name != i or i.startswith(".") or not (root / i / "item.json").is_file()]
    if unknown:
        known = ", ".join(i.id for i in list_items()) or "none"
        raise ConfigError(f"no added scene {', '.join(map(repr, unknown))}; the added scenes are: {known}")
    trash = Path(tempfile.mkdtemp(prefix=".removing-", dir=root))
    try:
        for item_id in item_ids:
            (root / item_id).rename(trash / item_id)
        loaded = _sync()
    except BaseException:
        for item_id in item_ids:
            if (trash / item_id).exists():
                (trash / item_id).rename(root / item_id)
        with contextlib.suppress(Exception):
            _sync()
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)
    return loaded
