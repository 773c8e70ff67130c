"""Canonical Sentinel-2 bands in any catalog's items: which asset holds a band, and how to read its numbers.

Catalogs name the same band differently (``B04``, ``red``, ``B04_10m``) and describe their radiometry in
their own metadata. Everything else in cropcore speaks of canonical bands (:data:`CANONICAL_BANDS`) and asks
this module, per item:

* :func:`asset_key`: the asset holding a band, found (in this order) by the known :data:`LAYOUTS` (the
  first is the exact key, ``B04``), the ``eo:bands`` / ``bands`` name of a single-band asset, or its common
  name (with the centre wavelength where a common name is shared, e.g. ``rededge``); among equals the finest
  resolution;
* :func:`radiometry`: ``reflectance = DN * scale + offset`` and the no-data value, from the asset's own
  ``raster:bands`` (STAC 1.0) or ``raster:scale`` / ``raster:offset`` (STAC 1.1), else from the processing
  baseline (scale 1e-4, offset -0.1 from baseline 04.00 on), never both.

One exception, Earth Search v1 ``sentinel-2-l2a``: its items carry ``raster:bands`` offset -0.1 whatever their
pixels hold, and ``earthsearch:boa_offset_applied`` says what they hold. Where the flag is true the +1000 DN of
baseline 04.00+ was already removed from the COGs (the same scene on ``sentinel-2-c1-l2a`` or the Copernicus
Data Space is exactly 1000 DN higher), so applying -0.1 would give reflectance 0.1 too low, negative over
water and dark fields (reported by users in Element84/earth-search issues #66 and #71 and
cirrus-geo/cirrus-earth-search #33). Items with that flag get the baseline rule instead: offset -0.1 only for
baseline 04.00+ scenes whose offset was not removed. Items the provider mis-flagged (#33, #66) cannot be told
apart from their metadata; Earth Search's ``sentinel-2-c1-l2a`` has consistent metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pystac

from cropcore.errors import ConfigError
from cropcore.legend import S2_BANDS, S2_BOA_OFFSET, S2_SCALE

#: Property of Earth Search v1 items: whether the +1000 DN offset of baseline 04.00+ was removed from the COGs.
EARTH_SEARCH_FLAG = "earthsearch:boa_offset_applied"
#: Bands a model or a mask may ask for: the 13 MSI bands and the Scene Classification layer.
CANONICAL_BANDS: tuple[str, ...] = (*S2_BANDS, "SCL")
#: Bands holding classes, not reflectance: no scale or offset, never interpolated.
CATEGORICAL_BANDS: tuple[str, ...] = ("SCL",)


@dataclass(frozen=True)
class Layout:
    """How one catalog names the assets of the canonical bands (candidates in order of preference)."""

    name: str
    keys: Mapping[str, tuple[str, ...]]


_EARTH_SEARCH_NAMES = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
    "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22", "SCL": "scl",
}

#: The layouts of the catalogs cropcore knows, tried in this order (checked against real items, see
#: tests/test_bands.py). The first, the exact key, is the embedded catalog's and Planetary Computer's.
LAYOUTS: tuple[Layout, ...] = (
    Layout("exact key (embedded catalog, Planetary Computer sentinel-2-l2a)", {b: (b,) for b in CANONICAL_BANDS}),
    Layout("Earth Search v1 sentinel-2-l2a and sentinel-2-c1-l2a",
           {b: (key,) for b, key in _EARTH_SEARCH_NAMES.items()}),
    Layout("Copernicus Data Space sentinel-2-l2a",
           {b: tuple(f"{b}_{res}m" for res in (10, 20, 60)) for b in CANONICAL_BANDS}),
)


@dataclass(frozen=True)
class Radiometry:
    """``reflectance = DN * scale + offset`` (reflectance units); ``nodata`` is the no-data DN, if any."""

    scale: float
    offset: float
    nodata: float | None


def _descriptions(asset: pystac.Asset) -> list[dict[str, Any]]:
    """The band descriptions of an asset: ``eo:bands`` (STAC 1.0) or ``bands`` (STAC 1.1)."""
    return list(asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or [])


_STAC11_NAMES = {"scale": "raster:scale", "offset": "raster:offset", "nodata": "nodata", "data_type": "data_type"}


def _field(asset: pystac.Asset, name: str) -> Any:
    """``scale``, ``offset``, ``nodata`` or ``data_type`` of a single-band asset, None when not given.

    Read from ``raster:bands[0]`` (raster extension 1.x), then ``bands[0]`` and the asset itself (STAC 1.1).
    """
    extra = asset.extra_fields
    raster = (extra.get("raster:bands") or [{}])[0]
    band = (extra.get("bands") or [{}])[0]
    for value in (raster.get(name), band.get(_STAC11_NAMES[name]), extra.get(_STAC11_NAMES[name])):
        if value is not None:
            return value
    return None


_SUFFIX = re.compile(r"_(\d+)m$")


def _resolution(key: str, asset: pystac.Asset) -> float:
    """The asset's pixel size in metres (``gsd``, ``proj:transform`` or a ``_20m`` key suffix); inf if unknown."""
    extra = asset.extra_fields
    raster = (extra.get("raster:bands") or [{}])[0]
    transform = extra.get("proj:transform")
    suffix = _SUFFIX.search(key)
    for value in (extra.get("gsd"), raster.get("spatial_resolution"), transform[0] if transform else None,
                  suffix.group(1) if suffix else None):
        if value is not None:
            return abs(float(value))
    return float("inf")


def _finest(item: pystac.Item, keys: Iterable[str]) -> str | None:
    ranked = sorted(keys, key=lambda k: (_resolution(k, item.assets[k]), k))
    return ranked[0] if ranked else None


def _single_bands(item: pystac.Item) -> dict[str, dict[str, Any]]:
    """Asset key -> band description, for the assets that describe exactly one band."""
    return {key: bands[0] for key, asset in item.assets.items() if len(bands := _descriptions(asset)) == 1}


def _by_common_name(item: pystac.Item, band: str) -> str | None:
    meta = S2_BANDS.get(band)
    if meta is None or meta.common_name is None:
        return None
    shared = sum(b.common_name == meta.common_name for b in S2_BANDS.values()) > 1
    found = []
    for key, desc in _single_bands(item).items():
        if (desc.get("common_name") or desc.get("eo:common_name")) != meta.common_name:
            continue
        centre = desc.get("center_wavelength") or desc.get("eo:center_wavelength")
        if centre is not None and abs(float(centre) - meta.center_wavelength) > meta.full_width_half_max / 2:
            continue  # e.g. rededge at 0.740 µm is B06, not B05
        if centre is None and shared:
            continue  # "rededge" alone could be B05, B06 or B07
        found.append(key)
    return _finest(item, found)


def asset_key(item: pystac.Item, band: str) -> str | None:
    """The key of the asset of ``item`` holding canonical ``band``, or None (see the module docstring)."""
    for layout in LAYOUTS:
        for key in layout.keys.get(band, ()):
            if key in item.assets:
                return key
    named = [key for key, desc in _single_bands(item).items() if desc.get("name") == band]
    return _finest(item, named) or _by_common_name(item, band)


def unresolved_error(item: pystac.Item, bands: Iterable[str]) -> ConfigError:
    """The error for ``bands`` that no asset of ``item`` holds: names the item, the bands and its assets."""
    return ConfigError(
        f"unknown bands {list(bands)}: item {item.id} has no asset for them (its assets: "
        f"{', '.join(sorted(item.assets))}); a band is found by its asset key, a known catalog layout "
        f"({'; '.join(layout.name for layout in LAYOUTS)}), its eo:bands/bands name or its common name"
    )


def asset_keys(item: pystac.Item, bands: Iterable[str]) -> dict[str, str]:
    """Canonical band -> asset key for every band of ``bands``; a :class:`ConfigError` if one is missing."""
    bands = list(bands)
    keys = {band: key for band in bands if (key := asset_key(item, band)) is not None}
    missing = [band for band in bands if band not in keys]
    if missing:
        raise unresolved_error(item, missing)
    return keys


def processing_baseline(item: pystac.Item) -> float | None:
    """The item's processing baseline (``s2:processing_baseline``, or CDSE's ``processing:version``), if any."""
    for name in ("s2:processing_baseline", "processing:version"):
        try:
            return float(item.properties[name])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def radiometry(item: pystac.Item, band: str) -> Radiometry:
    """How to turn the DNs of canonical ``band`` of ``item`` into reflectance (see the module docstring).

    Categorical bands (SCL) get scale 1 and offset 0. No-data comes from the metadata only (None if absent).
    Items flagged ``earthsearch:boa_offset_applied`` (Earth Search v1) follow the flag, not their ``raster:bands``
    offset (see the module docstring).
    """
    asset = item.assets[asset_keys(item, [band])[band]]
    nodata = _field(asset, "nodata")
    nodata = None if nodata is None else float(nodata)
    if band in CATEGORICAL_BANDS:
        return Radiometry(1.0, 0.0, nodata)
    scale, offset = _field(asset, "scale"), _field(asset, "offset")
    applied = item.properties.get(EARTH_SEARCH_FLAG)
    if applied is not None:  # Earth Search v1: the flag says what the pixels hold, its offset does not
        baseline = processing_baseline(item)
        offset_dn = S2_BOA_OFFSET if baseline is not None and baseline >= 4.0 and not applied else 0
        scale = S2_SCALE if scale is None else float(scale)
        return Radiometry(scale, -offset_dn * scale, nodata)
    if scale is not None or offset is not None:  # the metadata says it: the baseline rule does not apply
        return Radiometry(1.0 if scale is None else float(scale), 0.0 if offset is None else float(offset), nodata)
    baseline = processing_baseline(item)
    offset_dn = S2_BOA_OFFSET if baseline is not None and baseline >= 4.0 else 0
    return Radiometry(S2_SCALE, -offset_dn * S2_SCALE, nodata)


def data_type(item: pystac.Item, band: str) -> str:
    """The pixel type of canonical ``band`` of ``item``: from the metadata, else uint8 for SCL, uint16 otherwise."""
    given = _field(item.assets[asset_keys(item, [band])[band]], "data_type")
    return given or ("uint8" if band in CATEGORICAL_BANDS else "uint16")
