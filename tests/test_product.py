"""The product: one set of files, the same on disk (CLI) and in memory (dashboard), written all or nothing."""

import json

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.io import MemoryFile

from cropcore.aoi import AOI
from cropcore.errors import ConfigError, ExportError
from cropcore.inference.options import NODATA
from cropcore.models.registry import untrained_meta
from cropcore.products import product
from cropcore.products.product import FILES, product_bytes, write_product

AOI_ = AOI.parse((5.322, 50.630, 5.330, 50.636))
META = untrained_meta("tempcnn", bands=2, classes=3, seq_len=4)
MANIFEST = {"items": ["a"], "model": {"name": META.name}}


def prediction() -> xr.Dataset:
    classes = np.array([[0, 1, 2], [2, NODATA, 1]], dtype="uint8")
    confidence = np.where(classes == NODATA, np.nan, 0.5).astype("float32")
    coords = {"y": 5612115.0 - 10 * np.arange(2), "x": 664005.0 + 10 * np.arange(3)}
    ds = xr.Dataset({"class": (("y", "x"), classes), "confidence": (("y", "x"), confidence)}, coords=coords)
    return ds.rio.write_crs("EPSG:32631")


def test_disk_and_memory_hold_the_same_files(tmp_path):
    paths = write_product(prediction(), META, tmp_path, manifest=MANIFEST, aoi=AOI_, name="demo")
    data = product_bytes(prediction(), META, manifest=MANIFEST, aoi=AOI_)
    assert list(paths) == list(data) == [f.key for f in FILES]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.file_name("demo") for f in FILES)
    for key in ("areas", "aoi", "manifest"):
        assert paths[key].read_bytes() == data[key]
    for key in ("map", "confidence"):
        with rasterio.open(paths[key]) as disk, MemoryFile(data[key]) as mem, mem.open() as memory:
            np.testing.assert_array_equal(disk.read(), memory.read())
            assert disk.tags() == memory.tags() and json.loads(disk.tags()["MANIFEST"]) == MANIFEST
    assert json.loads(paths["manifest"].read_text()) == MANIFEST
    assert json.loads(paths["aoi"].read_text()) == json.loads(json.dumps(AOI_.feature_collection()))
    areas = paths["areas"].read_text().splitlines()
    assert areas[0] == "class_id,class,pixels,hectares,percent" and len(areas) == 1 + META.num_classes


def test_a_failing_file_removes_the_ones_written(tmp_path, monkeypatch):
    def full_disk(text, dst):
        raise ExportError(f"cannot write {dst}: the disk is full")

    monkeypatch.setattr(product, "write_text_atomic", full_disk)
    with pytest.raises(ExportError, match="disk is full"):
        write_product(prediction(), META, tmp_path, manifest=MANIFEST, aoi=AOI_)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "a\\b"])
def test_names_must_be_plain(tmp_path, name):
    with pytest.raises(ConfigError, match="plain name"):
        write_product(prediction(), META, tmp_path, manifest=MANIFEST, aoi=AOI_, name=name)
    assert list(tmp_path.iterdir()) == []
