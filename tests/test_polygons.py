"""The crop map as field polygons (cropcore.products.polygons): minimum mapping unit, uncertain and no-data pixels,
the three file formats, bad settings, and the predict CLI on the demo run."""

from __future__ import annotations

import json
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pytest
import xarray as xr

from cropcore.errors import ConfigError
from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.products.polygons import polygon_bytes, vectorize, write_polygons

NAMES = ("grass", "maize", "wheat")
DEMO = (5.3189, 50.6286, 5.3334, 50.6378)
COLUMNS = ["class_id", "class", "area_ha", "pixels", "confidence", "geometry"]


def class_map() -> xr.Dataset:
    """40 x 40 px at 10 m: grass left, wheat right, a 2 x 2 maize speck, a 6 x 6 uncertain block, a 2 x 2 uncertain
    speck, a no-data band on top and a wheat island (3 px) inside it."""
    classes = np.zeros((40, 40), dtype=np.uint8)
    classes[:, 20:] = 2
    classes[10:12, 5:7] = 1  # 4 px maize inside grass
    classes[25:31, 25:31] = UNCERTAIN  # 36 px = 0.36 ha
    classes[30:32, 5:7] = UNCERTAIN  # 4 px
    classes[:5] = NODATA
    classes[1, 10:13] = 2  # isolated in no data
    confidence = np.where(classes == 2, 0.9, 0.6).astype("float32")
    confidence[classes == NODATA] = np.nan
    confidence[1, 10:13] = 0.9
    coords = {"y": 5_600_000 - 5 - 10 * np.arange(40), "x": 600_005 + 10 * np.arange(40)}
    return xr.Dataset({"class": (("y", "x"), classes), "confidence": (("y", "x"), confidence)},
                      coords=coords).rio.write_crs(32631)


def test_specks_below_the_mmu_are_merged_and_uncertain_regions_kept():
    gdf, summary = vectorize(class_map(), NAMES, mmu_ha=0.1)  # 10 pixels
    assert list(gdf.columns) == COLUMNS and gdf.crs.to_epsg() == 32631
    assert summary.mmu_pixels == 10 and summary.dropped == 1 and summary.uncertain == 1
    assert sorted(gdf["class"]) == ["grass", "uncertain", "wheat"]
    assert summary.line() == ("3 polygons (minimum mapping unit 0.1 ha = 10 pixels; 1 uncertain); 1 isolated regions "
                              "below it (surrounded by no data) dropped")
    rows = gdf.set_index("class")
    # The maize and uncertain specks became grass; the island in no data is gone; no data is in no polygon.
    assert rows.loc["grass", "pixels"] == 35 * 20 == rows.loc["grass", "geometry"].area / 100
    assert rows.loc["uncertain", "pixels"] == 36 and rows.loc["uncertain", "class_id"] == UNCERTAIN
    assert rows.loc["wheat", "pixels"] == 35 * 20 - 36
    assert gdf["area_ha"].sum() == pytest.approx((40 * 40 - 5 * 40) / 100)
    assert rows.loc["wheat", "confidence"] == pytest.approx(0.9)
    assert rows.loc["grass", "confidence"] == pytest.approx(0.6)
    assert all(g.is_valid for g in gdf.geometry)


def test_without_an_mmu_every_region_is_a_polygon():
    gdf, summary = vectorize(class_map(), NAMES, mmu_ha=0)
    assert summary.mmu_pixels == 1 and summary.dropped == 0
    assert sorted(gdf["class"]) == ["grass", "maize", "uncertain", "uncertain", "wheat", "wheat"]
    assert gdf["pixels"].sum() == 40 * 40 - 5 * 40 + 3


@pytest.mark.parametrize("mmu", [-1, float("nan")])
def test_a_negative_mmu_is_refused(mmu):
    with pytest.raises(ConfigError, match="minimum mapping unit must be 0 or more hectares"):
        vectorize(class_map(), NAMES, mmu_ha=mmu)


def test_the_three_formats_round_trip(tmp_path):
    gdf, _ = vectorize(class_map(), NAMES, mmu_ha=0.1)
    for suffix, epsg in ((".gpkg", 32631), (".parquet", 32631), (".geojson", 4326)):
        path = write_polygons(gdf, tmp_path / f"fields{suffix}")
        back = gpd.read_parquet(path) if suffix == ".parquet" else gpd.read_file(path)
        assert list(back.columns) == COLUMNS and back.crs.to_epsg() == epsg and len(back) == 3
        assert back["area_ha"].sum() == pytest.approx(14.0)
        assert polygon_bytes(gdf, suffix)[:4] == path.read_bytes()[:4]
    assert json.loads((tmp_path / "fields.geojson").read_text())["type"] == "FeatureCollection"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fields.geojson", "fields.gpkg", "fields.parquet"]


def test_bad_suffix_and_failed_writes_leave_no_file(tmp_path):
    gdf, _ = vectorize(class_map(), NAMES)
    with pytest.raises(ConfigError, match=r"written as \.gpkg, \.parquet or \.geojson"):
        write_polygons(gdf, tmp_path / "fields.shp")
    (tmp_path / "taken.gpkg").mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(OSError, match="cannot write"):
        write_polygons(gdf, tmp_path / "taken.gpkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.gpkg"]
    assert list((tmp_path / "taken.gpkg").iterdir()) == []


def cropcore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cropcore", *args], capture_output=True, text=True, timeout=300)


def test_predict_cli_writes_polygons(stac_api, tmp_path):
    common = ("--bbox", *map(str, DEMO), "--start", "2020-11-01", "--end", "2021-10-31", "--catalog", stac_api)
    out = tmp_path / "map.tif"
    proc = cropcore("predict", *common, "--out", str(out), "--polygons", str(tmp_path / "fields.geojson"),
                    "--mmu", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "polygons (minimum mapping unit 0.5 ha = 50 pixels;" in proc.stdout
    gdf = gpd.read_file(tmp_path / "fields.geojson")
    assert list(gdf.columns) == COLUMNS and gdf.crs.to_epsg() == 4326
    assert gdf["pixels"].min() >= 50 and gdf["area_ha"].sum() == pytest.approx(100.0, rel=0.01)  # the mapped 1 km2

    for args, message in ((("--polygons", "f.shp"), "--polygons must name a .gpkg, .parquet or .geojson file"),
                          (("--polygons", "f.gpkg", "--mmu", "-2"), "--mmu must be 0 or more hectares, got -2")):
        bad = tmp_path / "bad"
        proc = cropcore("predict", *common, "--out", str(bad / "map.tif"), *args)
        assert proc.returncode == 2 and message in proc.stderr and not bad.exists()
