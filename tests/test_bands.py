"""Band resolution and radiometry on items shaped like the real items of each catalog.

Each item below keeps the structure of a real item (asset keys, band descriptions, raster fields and the
properties the rules read); the file it is modelled on is named above it. Hrefs are shortened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pystac
import pytest

from cropcore.errors import ConfigError
from cropcore.legend import S2_BANDS
from cropcore.stac.bands import (
    CANONICAL_BANDS,
    LAYOUTS,
    Radiometry,
    asset_key,
    asset_keys,
    data_type,
    processing_baseline,
    radiometry,
)

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
GEOMETRY = {"type": "Polygon", "coordinates": [[[15.0, 47.7], [16.5, 47.7], [16.5, 48.8], [15.0, 48.8], [15.0, 47.7]]]}


def _item(item_id: str, properties: dict[str, Any], assets: dict[str, dict[str, Any]]) -> pystac.Item:
    return pystac.Item.from_dict({
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": GEOMETRY,
        "bbox": [15.0, 47.7, 16.5, 48.8], "properties": {"datetime": "2023-09-12T13:42:47.536000Z", **properties},
        "links": [], "assets": assets,
    })


def _eo(name: str, band: str) -> dict[str, Any]:
    meta = S2_BANDS[band]
    return {"name": name, "common_name": meta.common_name, "center_wavelength": meta.center_wavelength,
            "full_width_half_max": meta.full_width_half_max}


def _grid(res: int) -> dict[str, Any]:
    return {"proj:shape": [109800 // res] * 2, "proj:transform": [res, 0, 799980, 0, -res, 9900040]}


# cropcore/stac/build.py (make_item), as served by the embedded catalog: .cropcore/catalog/stac/items.ndjson
def embedded() -> pystac.Item:
    return _item("worldcereal-be-2020-11", {"grid:code": "MGRS-31UFS", "cropcore:composite": "monthly"}, {
        "thumbnail": {"href": "file:///c/quicklook.png", "type": "image/png", "roles": ["thumbnail"]},
        **{b: {"href": f"file:///c/{b}.tif", "type": COG, "title": b, "eo:bands": [_eo(b, b)], **_grid(10),
               "raster:bands": [{"nodata": 65535, "data_type": "uint16", "spatial_resolution": 10.0, "scale": 0.0001,
                                 "offset": 0.0}], "roles": ["data"]}
           for b in ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")},
    })


ES_KEYS = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
           "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22"}


# Earth Search v1 sentinel-2-l2a: item S2B_22MHD_20230912_0_L2A
# (https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/S2B_22MHD_20230912_0_L2A, as
# recorded in a public repository's request example), with the scl, visual and *-jp2 assets of the collection's
# item_assets recorded in Element84/filmdrop-ui src/testing/shared-mocks.js.
def earth_search_v1(offset: float = -0.1, applied: bool = True) -> pystac.Item:
    def band_asset(key: str, band: str, suffix: str = "") -> dict[str, Any]:
        res = S2_BANDS[band].resolution
        return {"href": f"https://sentinel-cogs.s3.us-west-2.amazonaws.com/S2B_22MHD_20230912_0_L2A/{band}.tif",
                "type": "image/jp2" if suffix else COG, "title": f"{key} - {res}m", "eo:bands": [_eo(key, band)],
                "gsd": res, **_grid(res),
                "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "spatial_resolution": res,
                                  "scale": 0.0001, "offset": offset}], "roles": ["data", "reflectance"]}

    return _item("S2B_22MHD_20230912_0_L2A", {
        "grid:code": "MGRS-22MHD", "mgrs:utm_zone": 22, "mgrs:latitude_band": "M", "mgrs:grid_square": "HD",
        "s2:processing_baseline": "05.09", "s2:generation_time": "2023-09-12T17:40:59.000000Z",
        "earthsearch:boa_offset_applied": applied,
    }, {
        **{key: band_asset(key, band) for band, key in ES_KEYS.items()},
        **{f"{key}-jp2": band_asset(key, band, "-jp2") for band, key in ES_KEYS.items()},
        "scl": {"href": "https://sentinel-cogs.s3.us-west-2.amazonaws.com/S2B_22MHD_20230912_0_L2A/SCL.tif",
                "type": COG, "title": "Scene classification map (SCL)", **_grid(20),
                "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}],
                "roles": ["data", "reflectance"]},
        "visual": {"href": "https://sentinel-cogs.s3.us-west-2.amazonaws.com/S2B_22MHD_20230912_0_L2A/TCI.tif",
                   "type": COG, "title": "True color image",
                   "eo:bands": [_eo("red", "B04"), _eo("green", "B03"), _eo("blue", "B02")], **_grid(10),
                   "roles": ["visual"]},
    })


# Earth Search v1 sentinel-2-c1-l2a: philvarner/stac-factory tests/fixtures/S2B_T38XNF_20250422T091553_L2A.json
def earth_search_c1() -> pystac.Item:
    return _item("S2B_T38XNF_20250422T091553_L2A", {
        "grid:code": "MGRS-38XNF", "s2:processing_baseline": "05.11",
        "s2:generation_time": "2025-04-22T10:11:10.000000Z",
    }, {
        **{key: {"href": f"https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/S2B_T38XNF/{band}.tif",
                 "type": COG, "title": f"{key} - {S2_BANDS[band].resolution}m", "eo:bands": [_eo(band, band)],
                 "gsd": S2_BANDS[band].resolution, **_grid(S2_BANDS[band].resolution),
                 "raster:bands": [{"nodata": 0, "data_type": "uint16", "spatial_resolution": S2_BANDS[band].resolution,
                                   "scale": 0.0001, "offset": -0.1}],
                 "roles": ["data", "reflectance"]} for band, key in ES_KEYS.items()},
        "scl": {"href": "https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/S2B_T38XNF/SCL.tif",
                "type": COG, "title": "Scene classification map (SCL)", "gsd": 20, **_grid(20),
                "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}], "roles": ["data"]},
        "cloud": {"href": "https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/S2B_T38XNF/CLD_20m.tif",
                  "type": COG, "title": "Cloud Probabilities", "gsd": 20, **_grid(20),
                  "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}],
                  "roles": ["data", "cloud"]},
    })


# Planetary Computer sentinel-2-l2a: opendatacube/odc-stac
# tests/data/S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json (no raster:bands; B8A's common name is
# "rededge" there)
def planetary_computer(baseline: str = "02.12") -> pystac.Item:
    def band_asset(band: str) -> dict[str, Any]:
        eo = _eo(band, band) | ({"common_name": "rededge"} if band == "B8A" else {})
        res = S2_BANDS[band].resolution
        return {"href": f"https://sentinel2l2a01.blob.core.windows.net/T06VVN_20190629T212529_{band}_{res}m.tif",
                "type": COG, "title": f"Band {band} - {res}m", "gsd": res, "eo:bands": [eo], **_grid(res),
                "roles": ["data"]}

    return _item("S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531", {
        "s2:mgrs_tile": "06VVN", "s2:processing_baseline": baseline,
        "s2:generation_time": "2020-10-06T08:05:31.830Z",
    }, {
        **{band: band_asset(band) for band in S2_BANDS if band != "B10"},
        "SCL": {"href": "https://sentinel2l2a01.blob.core.windows.net/T06VVN_20190629T212529_SCL_20m.tif",
                "type": COG, "title": "Scene classfication map (SCL)", "gsd": 20.0, **_grid(20), "roles": ["data"]},
    })


#: The bands of an L2A SAFE product at each resolution (IMG_DATA/R10m, R20m, R60m).
CDSE_BANDS = {10: ("B02", "B03", "B04", "B08"),
              20: ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12"),
              60: ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")}


# Copernicus Data Space sentinel-2-l2a (STAC 1.1): opendatacube/odc-stac
# tests/data/S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914_cdse_stac_v110.json
def cdse() -> pystac.Item:
    def band_asset(band: str, res: int) -> dict[str, Any]:
        meta = S2_BANDS[band]
        return {"href": f"s3://eodata/Sentinel-2/MSI/L2A/T33UWP_20250330T100051_{band}_{res}m.jp2",
                "bands": [{"name": band, "eo:common_name": meta.common_name,
                           "eo:center_wavelength": meta.center_wavelength,
                           "eo:full_width_half_max": meta.full_width_half_max}],
                "proj:code": "EPSG:32633", **_grid(res), "gsd": res, "type": "image/jp2",
                "roles": ["data", "reflectance", f"gsd:{res}m"], "nodata": 0, "data_type": "uint16",
                "raster:scale": 0.0001, "raster:offset": -0.1}

    assets = {f"{band}_{res}m": band_asset(band, res) for res, bands in CDSE_BANDS.items() for band in bands}
    for res in (20, 60):
        assets[f"SCL_{res}m"] = {"href": f"s3://eodata/Sentinel-2/MSI/L2A/T33UWP_20250330T100051_SCL_{res}m.jp2",
                                 "title": f"Scene classification map (SCL) - {res}m", **_grid(res), "gsd": res,
                                 "type": "image/jp2", "roles": ["data", f"gsd:{res}m"], "nodata": 0,
                                 "data_type": "uint8"}
    assets["TCI_10m"] = {"href": "s3://eodata/Sentinel-2/MSI/L2A/T33UWP_20250330T100051_TCI_10m.jp2",
                         "bands": [{"name": b, "eo:common_name": S2_BANDS[b].common_name}
                                   for b in ("B04", "B03", "B02")],
                         "type": "image/jp2", "roles": ["visual"], "nodata": 0, "data_type": "uint8"}
    return _item("S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914", {
        "grid:code": "MGRS-33UWP", "processing:version": "05.11", "processing:datetime": "2025-03-30T14:59:14.000000Z",
    }, assets)


CATALOGS = {"embedded": embedded, "earth-search-v1": earth_search_v1, "earth-search-c1": earth_search_c1,
            "planetary-computer": planetary_computer, "cdse": cdse}

EXPECTED_KEYS = {
    "embedded": {"B02": "B02", "B04": "B04", "B05": "B05", "B08": "B08", "B11": "B11"},
    "earth-search-v1": {"B02": "blue", "B04": "red", "B05": "rededge1", "B06": "rededge2", "B07": "rededge3",
                        "B08": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22", "SCL": "scl"},
    "earth-search-c1": {"B04": "red", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "SCL": "scl"},
    "planetary-computer": {"B04": "B04", "B8A": "B8A", "B09": "B09", "SCL": "SCL"},
    "cdse": {"B01": "B01_20m", "B02": "B02_10m", "B04": "B04_10m", "B05": "B05_20m", "B08": "B08_10m",
             "B8A": "B8A_20m", "B09": "B09_60m", "B11": "B11_20m", "SCL": "SCL_20m"},
}


@pytest.mark.parametrize("catalog", EXPECTED_KEYS)
def test_each_catalog_layout_resolves_to_its_own_keys(catalog):
    item = CATALOGS[catalog]()
    assert asset_keys(item, EXPECTED_KEYS[catalog]) == EXPECTED_KEYS[catalog]


def test_the_layout_table_names_every_canonical_band_once_per_layout():
    for layout in LAYOUTS:
        assert set(layout.keys) <= set(CANONICAL_BANDS)
    keys = [key for layout in LAYOUTS for candidates in layout.keys.values() for key in candidates]
    assert len(keys) == len(set(keys))  # no key means two bands


def test_nir_is_b08_and_nir08_is_b8a():
    item = earth_search_v1()
    assert asset_key(item, "B08") == "nir" and asset_key(item, "B8A") == "nir08"


def _renamed(item: pystac.Item, name: Callable[[str, pystac.Asset], str]) -> pystac.Item:
    """``item`` with every asset key replaced by ``name(key, asset)`` (layouts no longer apply)."""
    copy = item.clone()
    copy.assets = {}
    for key, asset in item.assets.items():
        copy.add_asset(name(key, asset), asset.clone())
    return copy


def test_band_names_find_assets_with_any_key_and_the_finest_resolution_wins():
    """Per-band files named after the files, as in a user's folder: the eo:bands/bands name decides."""
    item = _renamed(cdse(), lambda key, asset: asset.href.rsplit("/", 1)[-1].removesuffix(".jp2"))
    assert asset_key(item, "B04") == "T33UWP_20250330T100051_B04_10m"
    assert asset_key(item, "B05") == "T33UWP_20250330T100051_B05_20m"  # not the 60 m one
    assert asset_key(item, "SCL") is None  # SCL assets describe no band: only keys find them


def test_common_names_with_centre_wavelengths_tell_the_red_edges_apart():
    item = _renamed(earth_search_v1(), lambda key, asset: f"band-{key}")
    for asset in item.assets.values():  # names no longer help: only common names and wavelengths do
        for desc in asset.extra_fields.get("eo:bands", []):
            desc["name"] = "?"
    assert asset_key(item, "B06") == "band-rededge2"
    assert asset_key(item, "B8A") == "band-nir08" and asset_key(item, "B08") == "band-nir"
    assert asset_key(item, "B02") == "band-blue"  # the COG and the JP2 have the same gsd: first key wins


def test_a_shared_common_name_without_wavelength_is_not_guessed():
    item = _renamed(earth_search_v1(), lambda key, asset: f"band-{key}")
    for asset in item.assets.values():
        for desc in asset.extra_fields.get("eo:bands", []):
            desc["name"] = "?"
            desc.pop("center_wavelength", None)
    assert asset_key(item, "B05") is None  # "rededge" could be B05, B06 or B07
    assert asset_key(item, "B04") == "band-red"  # "red" is one band


def test_an_unknown_band_names_the_item_the_band_and_the_assets():
    item = earth_search_v1()
    with pytest.raises(ConfigError) as err:
        asset_keys(item, ["B04", "B10"])
    message = str(err.value)
    assert "B10" in message and item.id in message and "swir22" in message and "B04" not in message.split(":")[0]


@pytest.mark.parametrize(("catalog", "band", "expected"), [
    ("embedded", "B04", Radiometry(0.0001, 0.0, 65535.0)),
    ("earth-search-v1", "B04", Radiometry(0.0001, 0.0, 0.0)),  # flagged: offset already removed from the COGs
    ("earth-search-v1", "SCL", Radiometry(1.0, 0.0, 0.0)),  # categorical: no scale, no offset
    ("earth-search-c1", "B12", Radiometry(0.0001, -0.1, 0.0)),
    ("earth-search-c1", "SCL", Radiometry(1.0, 0.0, 0.0)),
    ("planetary-computer", "B04", Radiometry(0.0001, 0.0, None)),  # baseline 02.12: no offset
    ("cdse", "B04", Radiometry(0.0001, -0.1, 0.0)),  # STAC 1.1 raster:scale / raster:offset on the asset
    ("cdse", "SCL", Radiometry(1.0, 0.0, 0.0)),
])
def test_radiometry_from_each_catalogs_metadata(catalog, band, expected):
    assert radiometry(CATALOGS[catalog](), band) == expected


def test_the_processing_baseline_rule_applies_only_without_metadata():
    assert radiometry(planetary_computer("05.10"), "B04") == Radiometry(0.0001, -0.1, None)
    assert radiometry(planetary_computer("04.00"), "B11") == Radiometry(0.0001, -0.1, None)
    assert radiometry(planetary_computer("03.01"), "B11") == Radiometry(0.0001, 0.0, None)
    # never both: an offset in the metadata is not added to the baseline's
    assert radiometry(cdse(), "B04") == Radiometry(0.0001, -0.1, 0.0)


def test_processing_baseline_from_s2_or_cdse_properties():
    assert processing_baseline(earth_search_v1()) == 5.09
    assert processing_baseline(cdse()) == 5.11
    assert processing_baseline(embedded()) is None


def test_data_type_from_metadata_or_the_product_default():
    assert data_type(cdse(), "SCL") == "uint8" and data_type(cdse(), "B04") == "uint16"
    assert data_type(planetary_computer(), "B04") == "uint16" and data_type(planetary_computer(), "SCL") == "uint8"


@pytest.mark.parametrize(("baseline", "applied", "offset"), [
    ("05.09", True, 0.0),  # the +1000 removed by Earth Search: the stale -0.1 of raster:bands is not applied
    ("04.00", False, -0.1),  # still in the pixels
    ("03.01", False, 0.0),  # before baseline 04.00 there is none
])
def test_earth_search_v1_follows_its_offset_flag_not_its_raster_bands(baseline, applied, offset):
    item = earth_search_v1(applied=applied)
    item.properties["s2:processing_baseline"] = baseline
    assert radiometry(item, "B04") == Radiometry(0.0001, offset, 0.0)
