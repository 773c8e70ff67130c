"""The product: one set of files, the same on disk (CLI) and in memory (dashboard), written all or nothing;
uncertain pixels and the cropland layer in it."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
from rasterio.io import MemoryFile

from cropcore.aoi import AOI
from cropcore.errors import ConfigError, ExportError
from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.legend import uncertain_color
from cropcore.models.meta import LegendEntry
from cropcore.models.registry import untrained_meta
from cropcore.products import product
from cropcore.products.product import FILES, map_colors, product_bytes, product_files, write_product
from cropcore.products.stats import class_areas

AOI_ = AOI.parse((5.322, 50.630, 5.330, 50.636))
META = replace(untrained_meta("tempcnn", bands=2, classes=3, seq_len=4), legend=(
    LegendEntry(0, "grass", "#9bd35a", False), LegendEntry(1, "maize", "#f2c12e", True),
    LegendEntry(2, "wheat", "#c8a165", True)))
MANIFEST = {"items": ["a"], "model": {"name": META.name}}


def prediction(cropland: bool = True) -> xr.Dataset:
    raw = np.array([[0, 1, 2], [2, NODATA, 1]], dtype="uint8")
    confidence = np.array([[0.9, 0.4, 0.8], [0.7, np.nan, 0.95]], dtype="float32")
    classes = np.where(confidence < 0.5, UNCERTAIN, raw).astype("uint8")
    coords = {"y": 5612115.0 - 10 * np.arange(2), "x": 664005.0 + 10 * np.arange(3)}
    layers = {"class": classes, "class_raw": raw, "confidence": confidence}
    if cropland:
        layers["cropland"] = np.array([[10, 55, 80], [90, NODATA, 97]], dtype="uint8")
    ds = xr.Dataset({k: (("y", "x"), v) for k, v in layers.items()}, coords=coords)
    return ds.rio.write_crs("EPSG:32631")


def test_disk_and_memory_hold_the_same_files(tmp_path):
    paths = write_product(prediction(), META, tmp_path, manifest=MANIFEST, aoi=AOI_, name="demo")
    data = product_bytes(prediction(), META, manifest=MANIFEST, aoi=AOI_)
    assert list(paths) == list(data) == [f.key for f in FILES] == [
        "map", "confidence", "cropland", "areas", "aoi", "manifest"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.file_name("demo") for f in FILES)
    for key in ("areas", "aoi", "manifest"):
        assert paths[key].read_bytes() == data[key]
    for key in ("map", "confidence", "cropland"):
        with rasterio.open(paths[key]) as disk, MemoryFile(data[key]) as mem, mem.open() as memory:
            np.testing.assert_array_equal(disk.read(), memory.read())
            assert disk.tags() == memory.tags() and json.loads(disk.tags()["MANIFEST"]) == MANIFEST
    assert json.loads(paths["manifest"].read_text()) == MANIFEST
    assert json.loads(paths["aoi"].read_text()) == json.loads(json.dumps(AOI_.feature_collection()))


def test_uncertain_pixels_have_their_own_value_colour_and_legend_entry(tmp_path):
    paths = write_product(prediction(), META, tmp_path, manifest=MANIFEST, aoi=AOI_)
    colour = uncertain_color(META.colors.values())
    assert map_colors(META) == {**META.colors, UNCERTAIN: colour} and colour not in META.colors.values()
    assert uncertain_color(["#4a4a4a", "#ff00ff", "#505050"]) == "#00e5ff"  # far from every class colour
    with rasterio.open(paths["map"]) as ds:
        np.testing.assert_array_equal(ds.read(1), prediction()["class"].values)
        assert ds.read(1)[0, 1] == UNCERTAIN and ds.nodata == NODATA
        assert ds.colormap(1)[UNCERTAIN][:3] == tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
        assert json.loads(ds.tags()["LEGEND"]) == {"0": "grass", "1": "maize", "2": "wheat", "254": "uncertain"}
        assert json.loads(ds.tags()["CLASS_NAMES"]) == META.class_names
    with rasterio.open(paths["cropland"]) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == NODATA and ds.tags()["UNITS"] == "percent"
        np.testing.assert_array_equal(ds.read(1), prediction()["cropland"].values)


def test_areas_report_uncertain_apart_and_the_cropland_total(tmp_path):
    paths = write_product(prediction(), META, tmp_path, manifest=MANIFEST, aoi=AOI_)
    areas = pd.read_csv(paths["areas"])
    assert list(areas.columns) == ["class_id", "class", "pixels", "hectares", "percent", "kind"]
    assert areas["class"].tolist() == ["grass", "maize", "wheat", "uncertain", "cropland"]
    assert areas["kind"].tolist() == ["non-crop", "crop", "crop", "uncertain", "total"]
    assert areas["pixels"].tolist() == [1, 1, 2, 1, 3]  # the uncertain maize pixel is not in maize or cropland
    parts = areas[areas["kind"] != "total"]
    assert parts["hectares"].sum() == pytest.approx(5 * 100 / 1e4) and parts["percent"].sum() == pytest.approx(100)
    assert areas["hectares"].iloc[-1] == pytest.approx(parts[parts["kind"] == "crop"]["hectares"].sum())
    with pytest.raises(ConfigError, match="uncertain pixels"):  # never dropped silently
        class_areas(prediction()["class"], META.class_names)


def test_a_model_without_crop_classes_has_no_cropland_file(tmp_path):
    plain = replace(META, legend=tuple(replace(c, is_crop=None) for c in META.legend))
    assert [f.key for f in product_files(prediction(cropland=False))] == [
        "map", "confidence", "areas", "aoi", "manifest"]
    paths = write_product(prediction(cropland=False), plain, tmp_path, manifest=MANIFEST, aoi=AOI_)
    assert "cropland" not in paths and not (tmp_path / "cropmap_cropland.tif").exists()
    areas = pd.read_csv(paths["areas"])
    assert areas["kind"].tolist() == ["class", "class", "class", "uncertain"]


def test_a_failing_file_removes_the_ones_written(tmp_path, monkeypatch):
    def full_disk(text, dst):
        raise ExportError(f"cannot write {dst}: the disk is full")

    monkeypatch.setattr(product, "write_text_atomic", full_disk)
    with pytest.raises(ExportError, match="disk is full"):
        write_product(prediction(), META, tmp_path, manifest=MANIFEST, aoi=AOI_)
    assert list(tmp_path.iterdir()) == []  # the map, confidence and cropland COGs written first are gone


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "a\\b"])
def test_names_must_be_plain(tmp_path, name):
    with pytest.raises(ConfigError, match="plain name"):
        write_product(prediction(), META, tmp_path, manifest=MANIFEST, aoi=AOI_, name=name)
    assert list(tmp_path.iterdir()) == []
