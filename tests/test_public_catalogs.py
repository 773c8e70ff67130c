"""Earth Search, Planetary Computer and Copernicus Data Space, offline: their real recorded items, served
by a replay STAC API on 127.0.0.1 (tests/replay_stac.py) and searched through pystac-client for real."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pystac
import pystac_client
import pytest
import rasterio
import requests
from catalog_fixtures import BANDS_20M, LAYOUTS, block_mean, demo_items, demo_months, recorded, recorded_items
from replay_stac import PROFILES, replay

from cropcore.errors import ConfigError, NoItemsFoundError
from cropcore.stac.bands import Radiometry, asset_keys, data_type, radiometry
from cropcore.stac.catalog import asset_access, resolve_catalog, search_items

ES_ITEM = "earth-search/S2A_39QTA_20230628_0_L2A.json"
ES_C1_ITEM = "earth-search/S2B_T38XNF_20250422T091553_L2A.json"  # collection sentinel-2-c1-l2a
# pystac's storage-extension migration (v1 -> v2) cannot parse the bucket of Earth Search c1 https hrefs and says so
STORAGE_MIGRATION = pytest.mark.filterwarnings("ignore:Could not parse bucket/account from href:UserWarning")
PC_ITEM = "planetary-computer/S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
PC_PAGE = "planetary-computer/search-page-1.json"
CDSE_ITEM = "copernicus/S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914_cdse_stac_v110.json"
DEMO_BBOX = (5.322, 50.630, 5.330, 50.636)
SEASON = ("2020-11-01", "2021-10-31")


@pytest.fixture(scope="module")
def demo_cogs(tmp_path_factory) -> dict[str, list[dict]]:
    """The demo patch in each catalog's conventions (12 months each), COGs in a temporary folder."""
    out = tmp_path_factory.mktemp("public-catalogs")
    return {catalog: demo_items(catalog, out) for catalog in LAYOUTS}


# -- the recorded items themselves ------------------------------------------------------------------------------

def test_earth_search_item_keeps_its_keys_offsets_and_flag():
    raw = recorded(ES_ITEM)
    item = pystac.Item.from_dict(raw)
    assert item.collection_id == "sentinel-2-l2a"
    keys = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "swir16", "swir22", "scl")
    assert set(keys) <= set(item.assets)
    red = item.assets["red"].to_dict()
    assert red["eo:bands"][0]["name"] == "red" and red["eo:bands"][0]["common_name"] == "red"
    assert red["raster:bands"][0] | {} == {"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                                         "spatial_resolution": 10, "scale": 0.0001, "offset": -0.1}
    assert item.assets["scl"].to_dict()["raster:bands"][0]["data_type"] == "uint8"
    assert item.properties["s2:processing_baseline"] == "05.09"
    assert item.properties["earthsearch:boa_offset_applied"] is True
    assert raw["properties"]["proj:epsg"] == 32639 and item.properties["grid:code"] == "MGRS-39QTA"
    assert item.properties["proj:code"] == "EPSG:32639"  # pystac migrates proj:epsg to projection v2 on reading
    assert item.to_dict(include_self_link=False, transform_hrefs=False)["assets"] == raw["assets"]  # no loss


@STORAGE_MIGRATION
def test_earth_search_c1_item_keeps_its_keys_offsets_and_no_flag():
    raw = recorded(ES_C1_ITEM)
    item = pystac.Item.from_dict(raw)
    assert item.collection_id == "sentinel-2-c1-l2a"
    keys = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09",
            "swir16", "swir22", "scl")
    assert set(keys) <= set(item.assets)
    red = item.assets["red"].to_dict()
    assert red["eo:bands"][0]["name"] == "B04" and red["eo:bands"][0]["common_name"] == "red"  # not "red" as in l2a
    assert red["raster:bands"][0] | {} == {"nodata": 0, "data_type": "uint16", "spatial_resolution": 10,
                                         "scale": 0.0001, "offset": -0.1}
    names = {k: item.assets[k].to_dict()["eo:bands"][0]["name"] for k in keys if k != "scl"}
    assert names == {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
                     "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
                     "swir16": "B11", "swir22": "B12"}
    scl = item.assets["scl"].to_dict()
    assert scl["raster:bands"][0] == {"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}
    assert "eo:bands" not in scl
    assert item.assets["red"].href.endswith("/sentinel-2-c1-l2a/38/X/NF/2025/4/S2B_T38XNF_20250422T091553_L2A/B04.tif")
    assert item.properties["s2:processing_baseline"] == "05.11"
    assert "earthsearch:boa_offset_applied" not in raw["properties"]  # collection 1 has no such flag
    assert raw["properties"]["proj:epsg"] == 32638 and item.properties["grid:code"] == "MGRS-38XNF"
    assert item.to_dict(include_self_link=False, transform_hrefs=False)["assets"] == raw["assets"]  # no loss


@STORAGE_MIGRATION
def test_earth_search_c1_item_resolves_bands_and_keeps_its_offset():
    item = pystac.Item.from_dict(recorded(ES_C1_ITEM))
    bands = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12", "SCL"]
    assert asset_keys(item, bands) == {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red",
                                       "B05": "rededge1", "B06": "rededge2", "B07": "rededge3", "B08": "nir",
                                       "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22",
                                       "SCL": "scl"}
    # collection 1 holds the +1000 DN of baseline 04.00+ and says so: its -0.1 applies (unlike flagged l2a items)
    assert radiometry(item, "B04") == Radiometry(0.0001, -0.1, 0.0)
    assert all(radiometry(item, b) == Radiometry(0.0001, -0.1, 0.0) for b in bands[:-1])
    assert radiometry(item, "SCL") == Radiometry(1.0, 0.0, 0.0)
    assert data_type(item, "B04") == "uint16" and data_type(item, "SCL") == "uint8"
    l2a = pystac.Item.from_dict(recorded(ES_ITEM))  # the flagged l2a item: offset already removed from its DNs
    assert radiometry(l2a, "B04") == Radiometry(0.0001, 0.0, 0.0)


def test_planetary_computer_item_keeps_its_keys_and_baseline():
    raw = recorded(PC_ITEM)
    item = pystac.Item.from_dict(raw)
    assert {f"B{n:02d}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12)} | {"B8A", "SCL"} <= set(item.assets)
    b04 = item.assets["B04"].to_dict()
    assert b04["eo:bands"][0] == {"name": "B04", "common_name": "red", "description": "Band 4 - Red",
                                  "center_wavelength": 0.665, "full_width_half_max": 0.038}
    assert "raster:bands" not in b04  # no scale or offset: the processing-baseline rule applies
    assert item.properties["s2:processing_baseline"] == "02.12"
    assert item.properties["s2:mgrs_tile"] == "06VVN"
    assert item.assets["SCL"].href.endswith("_SCL_20m.tif") and b04["gsd"] == 10
    assert item.to_dict(include_self_link=False, transform_hrefs=False)["assets"] == raw["assets"]


def test_planetary_computer_search_page_has_a_post_next_link():
    page = recorded(PC_PAGE)
    assert page["type"] == "FeatureCollection" and len(page["features"]) == 1
    (nxt,) = [link for link in page["links"] if link["rel"] == "next"]
    assert nxt["method"] == "POST" and nxt["href"].endswith("/api/stac/v1/search")
    assert nxt["body"]["token"] == f"next:{page['features'][0]['id']}"
    items = pystac.ItemCollection.from_dict(page)
    assert items[0].properties["s2:processing_baseline"] == "04.00"  # a baseline that carries the +1000 offset


def test_copernicus_item_keeps_stac_1_1_scale_offset_and_s3_hrefs():
    raw = recorded(CDSE_ITEM)
    item = pystac.Item.from_dict(raw)
    assert raw["stac_version"] == "1.1.0"
    assert {"B02_10m", "B04_10m", "B04_20m", "B08_10m", "B11_20m", "B8A_20m", "SCL_20m"} <= set(item.assets)
    b04 = item.assets["B04_10m"].to_dict()
    assert b04["raster:scale"] == 0.0001 and b04["raster:offset"] == -0.1 and b04["nodata"] == 0
    assert b04["bands"][0]["name"] == "B04" and b04["bands"][0]["eo:common_name"] == "red"
    assert b04["proj:code"] == "EPSG:32633" and b04["proj:shape"] == [10980, 10980]
    assert item.assets["B04_20m"].to_dict()["proj:shape"] == [5490, 5490]
    assert item.properties["processing:version"] == "05.11"
    bands = [a for k, a in item.assets.items() if k.endswith(("_10m", "_20m", "_60m"))]
    assert len(bands) == 36 and all(a.href.startswith("s3://eodata/") for a in bands)
    assert b04["auth:refs"] == ["s3"] and b04["alternate"]["https"]["auth:refs"] == ["oidc"]
    assert item.to_dict(include_self_link=False, transform_hrefs=False)["assets"] == raw["assets"]


# -- search through pystac-client against the replay ------------------------------------------------------------

def test_earth_search_recorded_item_is_found_with_the_query_extension():
    with replay(recorded_items("earth-search"), "earth-search") as api:
        found = search_items((48.5, 18.3, 48.6, 18.4), ("2023-06-01", "2023-06-30"), catalog=api.url,
                             collections=["sentinel-2-l2a"], max_cloud=10)
        assert found.table["id"].tolist() == ["S2A_39QTA_20230628_0_L2A"]
        assert found.table["tile"].tolist() == ["39QTA"]  # from grid:code
        assert api.searches()[-1]["query"] == {"eo:cloud_cover": {"lte": 10}}  # Earth Search's own extension
        with pytest.raises(NoItemsFoundError):  # cloud cover 4.03 %: filtered by the server
            search_items((48.5, 18.3, 48.6, 18.4), ("2023-06-01", "2023-06-30"), catalog=api.url, max_cloud=4)


@STORAGE_MIGRATION
def test_earth_search_recorded_c1_item_is_found_in_its_collection():
    aoi, day = (47.85, 72.87, 47.95, 72.92), ("2025-04-22", "2025-04-22")  # inside the item's footprint
    with replay(recorded_items("earth-search"), "earth-search") as api:
        assert "sentinel-2-c1-l2a" in [c["id"] for c in requests.get(f"{api.url}/collections", timeout=5).json()[
            "collections"]]
        found = search_items(aoi, day, catalog=api.url, collections=["sentinel-2-c1-l2a"], max_cloud=95)
        assert found.table["id"].tolist() == ["S2B_T38XNF_20250422T091553_L2A"]
        assert found.table["tile"].tolist() == ["38XNF"]  # from grid:code
        assert api.searches()[-1]["collections"] == ["sentinel-2-c1-l2a"]
        assert api.searches()[-1]["query"] == {"eo:cloud_cover": {"lte": 95}}
        assert asset_keys(found.items[0], ["B04", "SCL"]) == {"B04": "red", "SCL": "scl"}
        with pytest.raises(NoItemsFoundError):  # cloud cover 91.1 %: filtered by the server
            search_items(aoi, day, catalog=api.url, collections=["sentinel-2-c1-l2a"], max_cloud=90)
        with pytest.raises(NoItemsFoundError):  # not in the other collection
            search_items(aoi, day, catalog=api.url, collections=["sentinel-2-l2a"], max_cloud=95)


def test_planetary_computer_recorded_items_page_and_filter_on_the_server():
    aoi = (27.40, -14.0, 27.43, -9.5)  # a strip across six of the recorded tiles (35LNE ... 35LNK)
    with replay(recorded_items("planetary-computer"), "planetary-computer") as api:
        found = search_items(aoi, "2020-06-06", catalog=api.url, collections=["sentinel-2-l2a"], max_cloud=5,
                             page_size=2)
        assert sorted(found.table["tile"]) == ["35LNG", "35LNH", "35LNJ", "35LNK"]  # 35LNF 5.4 %, 35LNE 16.4 %
        assert (found.table["cloud_cover"] <= 5).all()
        searches = api.searches()
        assert len(searches) == 2  # two pages of two, the second asked for with the next link's token
        assert all(s["filter"] == {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 5]} for s in searches)
        assert searches[1]["token"].startswith("next:")
        everything = search_items(aoi, "2020-06-06", catalog=api.url, page_size=4)
        assert len(everything.items) == 6


def test_copernicus_recorded_item_is_found_with_cql2():
    with replay(recorded_items("copernicus"), "copernicus") as api:
        found = search_items((15.5, 48.0, 15.6, 48.1), ("2025-03-30", "2025-03-30"), catalog=api.url,
                             collections=["sentinel-2-l2a"], max_cloud=90)
        assert found.table["id"].tolist() == ["S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914"]
        assert found.table["tile"].tolist() == ["33UWP"]
        assert found.items[0].assets["B04_10m"].href.startswith("s3://eodata/")
        with pytest.raises(NoItemsFoundError):  # 86 % cloud
            search_items((15.5, 48.0, 15.6, 48.1), ("2025-03-30", "2025-03-30"), catalog=api.url, max_cloud=80)
        assert api.searches()[-1]["filter"]["args"][1] == 80


@pytest.mark.parametrize("catalog", list(LAYOUTS))
def test_demo_scenes_page_and_filter_in_each_catalogs_conventions(catalog, demo_cogs):
    with replay(demo_cogs[catalog], catalog) as api:
        found = search_items(DEMO_BBOX, SEASON, catalog=api.url, collections=["sentinel-2-l2a"], max_cloud=50,
                             page_size=4)
        assert len(found.items) == 10  # December and January are 100 % cloud: left out by the server
        assert [d.month for d in found.table["datetime"]] == [11, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        assert set(found.table["tile"]) == {"31UFS"}
        searches = api.searches()
        assert len(searches) == 3  # 4 + 4 + 2
        key = "query" if catalog == "earth-search" else "filter"
        assert all(key in s for s in searches)
        # the same search with GET and pystac-client's own paging
        client = pystac_client.Client.open(api.url)
        got = client.search(bbox=DEMO_BBOX, datetime="2020-11-01/2021-10-31", collections=["sentinel-2-l2a"],
                            limit=5, method="GET")
        assert len(list(got.items())) == 12 and len(api.searches()) == len(searches) + 3


def test_planetary_computer_hrefs_come_back_signed():
    def sign(href: str) -> str:  # a shared-access token on blob-storage hrefs, as the PC signer adds
        blob = ".blob.core.windows.net/" in href
        return f"{href}?st=2026-12-01&se=2026-12-02&sp=rl&sig=replayed" if blob else href

    def sas_sign(obj):  # a real signer, on the objects pystac-client hands to PC's
        if isinstance(obj, pystac.Item):
            for asset in obj.assets.values():
                asset.href = sign(asset.href)
        elif isinstance(obj, pystac.ItemCollection):
            for item in obj:
                sas_sign(item)
        elif isinstance(obj, dict):  # each page (FeatureCollection) as a dict
            for item in obj.get("features", [obj] if "assets" in obj else []):
                for asset in item["assets"].values():
                    asset["href"] = sign(asset["href"])
        return obj

    pc = resolve_catalog("planetary-computer")
    assert pc.sign is not None and pc.sign.__name__ == "_pc_sign"  # the planetary-computer package's signer
    with replay(recorded_items("planetary-computer"), "planetary-computer") as api:
        found = search_items((27.40, -12.0, 27.43, -9.5), "2020-06-06", catalog=dataclasses.replace(
            pc, url=api.url, sign=sas_sign))
    hrefs = [a.href for item in found.items for a in item.assets.values() if ".blob.core.windows.net/" in a.href]
    assert len(hrefs) == 4 * 22 and all(h.endswith(".tif?st=2026-12-01&se=2026-12-02&sp=rl&sig=replayed")
                                        or h.split("?")[0].endswith((".xml", ".safe")) for h in hrefs)
    assert all(h.count("?") == 1 for h in hrefs)
    assert found.table["quicklook"].str.endswith("&sig=replayed").all()


# -- the replay itself -------------------------------------------------------------------------------------------

def test_replay_declares_what_each_catalog_declares():
    with replay([recorded(ES_ITEM)], "earth-search") as es, replay([recorded(CDSE_ITEM)], "copernicus") as cdse:
        es_conf = requests.get(f"{es.url}/conformance", timeout=5).json()["conformsTo"]
        cdse_conf = requests.get(f"{cdse.url}/conformance", timeout=5).json()["conformsTo"]
        assert "https://api.stacspec.org/v1.0.0/item-search#query" in es_conf
        assert "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json" in cdse_conf
        assert requests.get(f"{cdse.url}/collections/sentinel-2-l2a", timeout=5).json()["id"] == "sentinel-2-l2a"
        one = requests.get(f"{cdse.url}/collections/sentinel-2-l2a/items/{recorded(CDSE_ITEM)['id']}", timeout=5)
        assert one.json() == recorded(CDSE_ITEM)  # served unchanged
        assert PROFILES["planetary-computer"].filter and PROFILES["planetary-computer"].query


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/nowhere", None, 404),
    ("GET", "/collections/sentinel-2-c1-l2a", None, 404),
    ("GET", "/collections/sentinel-2-l2a/items/missing", None, 404),
    ("PUT", "/collections/sentinel-2-l2a", {}, 405),
    ("DELETE", "/search", None, 405),
    ("POST", "/collections", {}, 405),
    ("PATCH", "/", {}, 405),
    ("GET", "/search?bbox=1,2,3", None, 400),
    ("GET", "/search?limit=0", None, 400),
    ("GET", "/search?datetime=yesterday", None, 400),
    ("GET", "/search?token=next:nobody", None, 400),
    ("POST", "/search", {"next": "2020-01-01,x,y"}, 400),  # pgstac pages with token, not next
    ("POST", "/search", {"query": {"eo:cloud_cover": {"near": 3}}}, 400),
    ("POST", "/search", {"filter": {"op": "like", "args": []}}, 400),
    ("POST", "/search", {"unknown": 1}, 400),
])
def test_replay_refuses_what_it_cannot_answer(method, path, body, status):
    with replay(recorded_items("planetary-computer"), "planetary-computer") as api:
        answer = requests.request(method, api.url + path, json=body, timeout=5)
        assert answer.status_code == status
        assert answer.json()["code"] in {"NotFoundError", "MethodNotAllowed", "BadRequest"}


def test_replay_refuses_extensions_the_catalog_does_not_declare():
    with replay([recorded(ES_ITEM)], "earth-search") as api:
        answer = requests.post(f"{api.url}/search", json={"filter": {"op": "<=", "args": [
            {"property": "eo:cloud_cover"}, 5]}}, timeout=5)
        assert answer.status_code == 400 and "filter" in answer.json()["description"]


# -- the demo scenes in each catalog's conventions ---------------------------------------------------------------

@pytest.mark.parametrize("catalog", list(LAYOUTS))
def test_demo_scenes_are_stored_as_the_catalog_stores_them(catalog, demo_cogs):
    layout, months = LAYOUTS[catalog], demo_months()
    items = demo_cogs[catalog]
    real = recorded(f"{catalog}/{layout.recorded}")
    assert len(items) == 12
    may = pystac.Item.from_dict(items[6])
    for band, key in layout.keys.items():
        asset = may.to_dict(transform_hrefs=False)["assets"][key]
        kept = {k: v for k, v in real["assets"][key].items() if k not in ("href", "type", "alternate", "file:size",
                                                                           "file:checksum", "file:local_path")
                and not k.startswith("proj:")}
        assert {k: asset[k] for k in kept} == kept  # the recorded metadata, unchanged
        with rasterio.open(asset["href"]) as ds:
            assert ds.nodata == 0 and ds.res == ((20.0, 20.0) if band in (*BANDS_20M, "SCL") else (10.0, 10.0))
            assert asset["proj:shape"] == list(ds.shape) and asset["proj:transform"] == list(ds.transform)[:6]
            stored = ds.read(1)
        if band == "SCL":
            assert set(np.unique(stored)) == {4}
            continue
        source = block_mean(months[6].bands[band]) if band in BANDS_20M else months[6].bands[band]
        valid = stored != 0
        assert (stored[valid].astype(int) - source[valid] == layout.dn_offset).all()
        assert ((~valid) == (source == 0)).all()  # May has a few 0 DNs: no data, in every layout
    december = pystac.Item.from_dict(items[1])
    with rasterio.open(december.assets[layout.keys["SCL"]].href) as ds:
        assert set(np.unique(ds.read(1))) == {9}  # no valid pixel that month: cloud
    assert december.properties["eo:cloud_cover"] == 100.0


def test_copernicus_assets_need_s3_credentials(monkeypatch):
    cdse = [pystac.Item.from_dict(recorded(CDSE_ITEM))]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set") as info:
        asset_access(cdse)
    assert "AWS_S3_ENDPOINT=eodata.dataspace.copernicus.eu" in str(info.value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY is not set"):
        asset_access(cdse)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert asset_access(cdse) == {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret",
                                  "AWS_S3_ENDPOINT": "eodata.dataspace.copernicus.eu", "AWS_VIRTUAL_HOSTING": "FALSE",
                                  "AWS_HTTPS": "YES"}
    assert asset_access([pystac.Item.from_dict(recorded(ES_ITEM))]) == {}  # public HTTPS COGs: nothing needed
    with pytest.warns(UserWarning, match="Could not parse bucket"):  # pystac's storage-extension migration
        c1 = pystac.Item.from_dict(recorded(ES_C1_ITEM))
    assert asset_access([c1]) == {}


def test_recorded_files_are_the_ones_sources_md_lists():
    sources = (Path(__file__).parent / "data" / "catalogs" / "SOURCES.md").read_text()
    for path in sorted((Path(__file__).parent / "data" / "catalogs").glob("*/*.json")):
        name = f"{path.parent.name}/{path.name}"
        assert f"`{name}`" in sources, f"{name} is not described in SOURCES.md"
        json.loads(path.read_text())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"{digest}  {name}" in sources, f"{name}: its SHA-256 is not the one SOURCES.md lists"
