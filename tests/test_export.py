"""COG export: valid COGs with colour table, legend and manifest; atomic under failure."""

import json

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 (registers .rio)
import xarray as xr
from rio_cogeo.cogeo import cog_validate

from cropcore.errors import ExportError
from cropcore.products import export

CLASSES = ["other", "wheat", "maize"]
COLOURS = {0: "#bdbdbd", 1: "#e6c229", 2: "#2e7d32"}


def class_map(height=300, width=400):
    values = (np.arange(height * width).reshape(height, width) // 997 % 3).astype("uint8")
    da = xr.DataArray(values, dims=("y", "x"),
                      coords={"y": 5612115.0 - 10 * np.arange(height), "x": 664005.0 + 10 * np.arange(width)})
    return da.rio.write_crs("EPSG:32631")


def test_categorical_cog_has_colours_names_and_manifest(tmp_path):
    dst = tmp_path / "map.tif"
    manifest = {"items": ["a", "b"], "model": {"name": "tempcnn", "sha256": "abc"}}
    assert export.write_cog(class_map(), dst, class_names=CLASSES, colormap=COLOURS, tags={"MANIFEST": manifest}) == dst
    assert cog_validate(str(dst))[0]
    with rasterio.open(dst) as ds:
        assert ds.crs.to_epsg() == 32631 and ds.res == (10.0, 10.0)
        assert ds.colormap(1)[1] == (0xE6, 0xC2, 0x29, 255)
        assert json.loads(ds.tags()["CLASS_NAMES"]) == CLASSES
        assert json.loads(ds.tags()["MANIFEST"])["model"]["name"] == "tempcnn"
        np.testing.assert_array_equal(ds.read(1), class_map().values)
        assert ds.overviews(1)  # 300 x 400 px gets at least one overview level
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]  # one file, no temporary left


def test_memory_export_returns_cog_bytes(tmp_path):
    data = export.write_cog(class_map(64, 64).astype("float32") / 3, export.MEMORY)
    assert isinstance(data, bytes) and data[:2] in (b"II", b"MM")
    (tmp_path / "x.tif").write_bytes(data)
    assert cog_validate(str(tmp_path / "x.tif"))[0]


def test_failure_mid_write_leaves_no_file(tmp_path, monkeypatch):
    def crash(src, dst, *args, **kwargs):
        with open(dst, "wb") as f:
            f.write(b"II*\x00partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "cog_translate", crash)
    with pytest.raises(ExportError, match="the disk is full"):
        export.write_cog(class_map(), tmp_path / "map.tif", class_names=CLASSES, colormap=COLOURS)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ExportError, match="no CRS"):
        export.write_cog(xr.DataArray(np.zeros((4, 4), "uint8"), dims=("y", "x")), tmp_path / "a.tif")
    with pytest.raises(ExportError, match="single uint8 band"):
        export.write_cog(class_map().astype("float32"), tmp_path / "a.tif", class_names=CLASSES)
    assert list(tmp_path.iterdir()) == []
