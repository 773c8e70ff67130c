"""Per-parcel statistics (cropcore.products.parcels): against a pixel-by-pixel reference on a generated map, every
input format, the awkward parcels (invalid, tiny, outside, overlapping), bad files, atomic writes, bounded memory,
and the predict CLI on the demo run."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio.features
import shapely
import xarray as xr

from cropcore.errors import ConfigError
from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.products.parcels import INVALID, NO_DATA, OK, OUTSIDE, TINY, MapLayers, parcel_stats

NAMES = ("grass", "maize", "wheat")
ORIGIN = (600_000.0, 5_600_000.0)  # EPSG:32631, 10 m pixels
H, W = 60, 80
DEMO = (5.3189, 50.6286, 5.3334, 50.6378)


def generated_map(seed: int = 0, height: int = H, width: int = W) -> tuple[xr.Dataset, xr.DataArray]:
    """A class map (blocks of classes, uncertain and no-data pixels), confidence and a 3-month B04/B08 cube."""
    rng = np.random.default_rng(seed)
    classes = np.repeat(np.repeat(rng.integers(0, 3, (height // 10 + 1, width // 10 + 1)), 10, 0), 10, 1)
    classes = classes[:height, :width].astype(np.uint8)
    classes[rng.random((height, width)) < 0.1] = UNCERTAIN
    classes[:, :3] = NODATA
    confidence = rng.uniform(0.3, 1.0, (height, width)).astype("float32")
    confidence[classes == NODATA] = np.nan
    red = rng.uniform(0.02, 0.2, (3, height, width))
    nir = rng.uniform(0.1, 0.5, (3, height, width))
    x = ORIGIN[0] + 5 + 10 * np.arange(width)
    y = ORIGIN[1] - 5 - 10 * np.arange(height)
    coords = {"y": y, "x": x}
    prediction = xr.Dataset({"class": (("y", "x"), classes), "confidence": (("y", "x"), confidence)},
                            coords=coords).rio.write_crs(32631)
    times = pd.date_range("2021-04-01", periods=3, freq="MS")
    cube = xr.DataArray(np.stack([red, nir], axis=1).astype("float32"), dims=("time", "band", "y", "x"),
                        coords={"time": times, "band": ["B04", "B08"], **coords}).rio.write_crs(32631)
    return prediction, cube


@pytest.fixture(scope="module")
def layers() -> MapLayers:
    prediction, cube = generated_map()
    return MapLayers.from_prediction(prediction, cube, NAMES)


def box(col0: float, row0: float, col1: float, row1: float) -> shapely.Polygon:
    """A rectangle in map metres from pixel coordinates."""
    return shapely.box(ORIGIN[0] + 10 * col0, ORIGIN[1] - 10 * row1, ORIGIN[0] + 10 * col1, ORIGIN[1] - 10 * row0)


def grid_parcels() -> gpd.GeoDataFrame:
    """Jittered quadrilaterals on a 7 x 5 grid (6 x 10 px cells), plus an attribute that clashes with ours."""
    rng = np.random.default_rng(1)
    geoms = []
    for r in range(5):
        for c in range(7):
            j = rng.uniform(0, 1.5, 8)
            x0, y0, x1, y1 = 4 + 10 * c, 2 + 11 * r, 12 + 10 * c, 11 + 11 * r
            pts = [(x0 + j[0], y0 + j[1]), (x1 - j[2], y0 + j[3]), (x1 - j[4], y1 - j[5]), (x0 + j[6], y1 - j[7])]
            geoms.append(shapely.Polygon([(ORIGIN[0] + 10 * x, ORIGIN[1] - 10 * y) for x, y in pts]))
    return gpd.GeoDataFrame({"field": [f"F{i}" for i in range(len(geoms))], "status": "sown"}, geometry=geoms,
                            crs=32631)


def reference(geom: shapely.Geometry, layers: MapLayers) -> dict[str, float]:
    """One parcel's statistics pixel by pixel (rasterio.features.geometry_mask)."""
    inside = rasterio.features.geometry_mask([geom], layers.shape, layers.transform, invert=True)
    classes = layers.classes[inside]
    mapped = classes[classes != NODATA]
    classified = mapped[mapped != UNCERTAIN]
    counts = np.bincount(classified, minlength=len(NAMES))
    ndvi = layers.ndvi.values[:, inside]
    return {"class_id": counts.argmax(), "majority_share": counts.max() / mapped.size,
            "uncertain_share": (mapped == UNCERTAIN).mean(), "pixels": mapped.size,
            "confidence": np.nanmean(layers.confidence[inside]),
            **{m: np.nanmedian(ndvi[t]) for t, m in enumerate(layers.months)}}


def write_as(gdf: gpd.GeoDataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        gdf.to_parquet(path)
    elif path.suffix == ".zip":
        folder = path.parent / "shp"
        folder.mkdir()
        gdf.to_file(folder / "fields.shp")
        with zipfile.ZipFile(path, "w") as z:
            for part in folder.iterdir():
                z.write(part, part.name)
    else:
        gdf.to_file(path)
    return path


def outputs(tmp_path: Path) -> dict[str, Path]:
    return {"gpkg": tmp_path / "out" / "parcels.gpkg", "parquet": tmp_path / "out" / "parcels.parquet"}


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".parquet", ".zip"])
def test_statistics_match_a_pixel_reference_in_every_format(layers, tmp_path, suffix):
    parcels = grid_parcels()
    source = parcels.to_crs(4326) if suffix == ".geojson" else parcels
    summary = parcel_stats(write_as(source, tmp_path / f"fields{suffix}"), layers, outputs(tmp_path), batch_size=8)
    assert summary.total == 35 and summary.by_status[OK] == 35 and summary.overlapping == 0
    assert summary.line().startswith("35 parcels: 35 mapped")
    gpkg = gpd.read_file(summary.paths["gpkg"])
    parquet = gpd.read_parquet(summary.paths["parquet"])
    assert list(gpkg.columns) == list(parquet.columns)
    assert list(gpkg.columns[:11]) == ["parcel", "status", "note", "class_id", "class", "majority_share",
                                       "confidence", "uncertain_share", "area_ha", "pixels", "overlaps"]
    assert {"ndvi_2021_04", "ndvi_2021_05", "ndvi_2021_06", "field", "status_input", "geometry"} <= set(gpkg.columns)
    assert gpkg.crs == parquet.crs == source.crs
    pd.testing.assert_frame_equal(pd.DataFrame(gpkg.drop(columns="geometry")),
                                  pd.DataFrame(parquet.drop(columns="geometry")), check_dtype=False)
    assert gpkg["parcel"].tolist() == list(range(1, 36)) and gpkg["field"].tolist() == parcels["field"].tolist()
    for row, geom in zip(gpkg.itertuples(), parcels.geometry, strict=True):
        ref = reference(geom, layers)
        assert row.class_id == ref["class_id"] and row._5 == NAMES[ref["class_id"]]
        assert row.pixels == ref["pixels"]
        for key in ("majority_share", "uncertain_share", "confidence", *layers.months):
            assert getattr(row, key) == pytest.approx(ref[key], rel=1e-5), key
        assert row.area_ha == pytest.approx(geom.area / 1e4, rel=1e-3)


def test_awkward_parcels_get_a_status_and_a_note(layers, tmp_path):
    geoms = {
        "bowtie": shapely.Polygon([(ORIGIN[0] + 100, ORIGIN[1] - 100), (ORIGIN[0] + 300, ORIGIN[1] - 300),
                                   (ORIGIN[0] + 300, ORIGIN[1] - 100), (ORIGIN[0] + 100, ORIGIN[1] - 300)]),
        "big": box(10, 10, 30, 30),
        "inner": box(15, 15, 25, 25),  # inside "big": both overlap, each keeps all its pixels
        "tiny": box(40.2, 40.2, 40.6, 40.6),
        "sliver": box(50.1, 20, 50.4, 40),  # no pixel centre inside, but larger than a pixel
        "outside": box(500, 500, 510, 510),
        "edge": box(70, 50, 90, 70),  # a quarter of it on the map
        "nodata": box(0, 0, 2, 10),  # only no-data pixels (columns 0-2)
        "line": shapely.LineString([(ORIGIN[0], ORIGIN[1]), (ORIGIN[0] + 50, ORIGIN[1] - 50)]),
        "empty": shapely.Polygon(),
        "missing": None,
    }
    gdf = gpd.GeoDataFrame({"name": list(geoms)}, geometry=list(geoms.values()), crs=32631)
    summary = parcel_stats(write_as(gdf, tmp_path / "awkward.gpkg"), layers, outputs(tmp_path), batch_size=4)
    rows = gpd.read_parquet(summary.paths["parquet"]).set_index("name")
    status = rows["status"].to_dict()
    assert status == {"bowtie": OK, "big": OK, "inner": OK, "tiny": TINY, "sliver": OK, "outside": OUTSIDE,
                      "edge": OK, "nodata": NO_DATA, "line": INVALID, "empty": INVALID, "missing": INVALID}
    assert rows.loc["bowtie", "note"].startswith("repaired (Self-intersection")
    assert rows.loc["bowtie", "geometry"].is_valid and rows.loc["bowtie", "area_ha"] == pytest.approx(2.0)
    assert rows.loc["big", "overlaps"] and rows.loc["inner", "overlaps"] and not rows.loc["tiny", "overlaps"]
    assert rows.loc["big", "pixels"] == reference(geoms["big"], layers)["pixels"]
    assert rows.loc["inner", "pixels"] == reference(geoms["inner"], layers)["pixels"] == 100
    assert "overlaps another parcel" in rows.loc["inner", "note"]
    under = layers.classes[40, 40]  # the pixel under the tiny parcel
    assert rows.loc["tiny", "pixels"] == 1 and rows.loc["tiny", "class_id"] == under
    assert rows.loc["tiny", "note"] == "smaller than one pixel: the pixel under it"
    assert rows.loc["sliver", "pixels"] == 1
    assert rows.loc["edge", "note"] == "75 % outside the map"
    assert rows.loc["line", "note"] == "a LineString, not a polygon" and rows.loc["line", "geometry"] is None
    assert rows.loc["missing", "note"] == "no geometry"
    assert pd.isna(rows.loc["outside", "class"]) and rows.loc["outside", "note"] == "outside the map's extent"
    assert rows.loc["nodata", "note"] == "no map data under it" and pd.isna(rows.loc["nodata", "confidence"])
    assert summary.line() == ("11 parcels: 5 mapped, 1 tiny (< 1 pixel: the pixel under each), 1 without map data, "
                              "1 outside the map (no statistics), 3 invalid (skipped); 1 repaired, "
                              "3 overlap another parcel (each counted on its own), 1 partly outside the map")
    assert rows.loc["bowtie", "overlaps"]  # it covers part of "big"


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    grid = grid_parcels()
    no_crs = grid.set_crs(None, allow_override=True)
    (tmp_path / "nocrs").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "'crs' was not provided": the point of this file
        no_crs.to_file(tmp_path / "nocrs" / "f.shp")
    with zipfile.ZipFile(tmp_path / "nocrs.zip", "w") as z:
        for part in (tmp_path / "nocrs").iterdir():
            z.write(part, part.name)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as z:
        z.writestr("readme.txt", "no shapefile here")
    (tmp_path / "garbage.gpkg").write_bytes(b"not a geopackage" * 10)
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "plain.parquet")
    grid.iloc[:0].to_file(tmp_path / "none.gpkg")
    (tmp_path / "fields.csv").write_text("a,b\n")
    return {
        "csv": (tmp_path / "fields.csv", "unsupported parcel file"),
        "missing": (tmp_path / "nope.gpkg", "no such parcel file"),
        "garbage": (tmp_path / "garbage.gpkg", "not a readable GeoPackage"),
        "no shapefile": (tmp_path / "empty.zip", "the zip must hold one .shp"),
        "no crs": (tmp_path / "nocrs.zip", "has no coordinate reference system"),
        "plain parquet": (tmp_path / "plain.parquet", "without GeoParquet metadata"),
        "no parcels": (tmp_path / "none.gpkg", "holds no parcels"),
    }


@pytest.mark.parametrize("case", ["csv", "missing", "garbage", "no shapefile", "no crs", "plain parquet",
                                  "no parcels"])
def test_bad_files_are_refused_with_a_reason_and_no_output(layers, tmp_path, case):
    path, message = bad_files(tmp_path)[case]
    with pytest.raises(ConfigError, match=message):
        parcel_stats(path, layers, outputs(tmp_path))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_a_failure_half_way_leaves_no_partial_file(layers, tmp_path):
    source = write_as(grid_parcels(), tmp_path / "fields.gpkg")
    out = outputs(tmp_path)

    def stop(fraction: float, message: str) -> None:
        if "parcels" in message:  # after the first batch was written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        parcel_stats(source, layers, out, batch_size=5, progress=stop)
    assert list((tmp_path / "out").iterdir()) == []
    out["gpkg"].write_text("an older file")  # a failed run does not replace an existing output either
    with pytest.raises(KeyboardInterrupt):
        parcel_stats(source, layers, out, batch_size=5, progress=stop)
    assert out["gpkg"].read_text() == "an older file"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["parcels.gpkg"]


def many_parcels(n: int, height: int, width: int) -> gpd.GeoDataFrame:
    """``n`` 3 x 3-pixel squares in random order over the map."""
    per_row = width // 4
    cells = np.random.default_rng(2).permutation(n)
    rows, cols = np.divmod(cells, per_row)
    x0, y0 = ORIGIN[0] + 40 * cols + 5, ORIGIN[1] - 40 * rows - 5
    return gpd.GeoDataFrame(geometry=shapely.box(x0, y0 - 30, x0 + 30, y0), crs=32631)


def test_memory_does_not_grow_with_the_number_of_parcels(tmp_path):
    """tracemalloc peak of the statistics pass: 16 x more parcels on the same map, in batches of 500."""
    height = width = 400
    layers = MapLayers.from_prediction(*generated_map(3, height, width), NAMES)
    peaks = {}
    for n in (500, 8000):
        source = write_as(many_parcels(n, height, width), tmp_path / f"p{n}.gpkg")
        tracemalloc.start()
        summary = parcel_stats(source, layers, {"parquet": tmp_path / f"p{n}.parquet"}, batch_size=500)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert summary.total == n and summary.by_status[OK] == n
    assert peaks[8000] < 1.5 * peaks[500], peaks


def cropcore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cropcore", *args], capture_output=True, text=True, timeout=300)


def demo_grid(n: int = 4) -> gpd.GeoDataFrame:
    """``n`` x ``n`` rectangles over the demo AOI bbox (lon/lat), as a user's field file might hold."""
    w, s, e, north = DEMO
    xs, ys = np.linspace(w, e, n + 1), np.linspace(s, north, n + 1)
    geoms = [shapely.box(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(n) for i in range(n)]
    return gpd.GeoDataFrame({"field": [f"F{i}" for i in range(len(geoms))]}, geometry=geoms, crs=4326)


def test_predict_cli_writes_parcel_statistics(stac_api, tmp_path):
    source = write_as(demo_grid(), tmp_path / "fields.zip")
    out = tmp_path / "maps" / "map.tif"
    common = ("--bbox", *map(str, DEMO), "--start", "2020-11-01", "--end", "2021-10-31", "--catalog", stac_api)
    proc = cropcore("predict", *common, "--out", str(out), "--parcels", str(source))
    assert proc.returncode == 0, proc.stderr
    assert "parcels: 16 parcels: 16 mapped" in proc.stdout
    rows = gpd.read_file(out.parent / "map_parcels.gpkg")
    assert len(rows) == 16 and rows["class"].notna().all() and (rows["pixels"] > 500).all()
    assert rows[["ndvi_2020_11", "ndvi_2021_10"]].notna().all().all()
    assert len(gpd.read_parquet(out.parent / "map_parcels.parquet")) == 16

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "fields.gpkg").write_bytes(b"no")
    proc = cropcore("predict", *common, "--out", str(bad / "map.tif"), "--parcels", str(bad / "fields.gpkg"))
    assert proc.returncode == 2 and "not a readable GeoPackage" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and sorted(p.name for p in bad.iterdir()) == ["fields.gpkg"]
