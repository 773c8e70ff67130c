"""Training on your own labels (``cropcore train --labels``, the Train page) against the real embedded catalog.

The labels are made at test time from WorldCereal's own maps of the demo patch (``worldcereal/
patch_croptype_reference.nc`` and ``patch_cropland_reference.nc``): a REFERENCE PRODUCT, the output of
WorldCereal's production models, NOT ground truth. Its crop-type layer calls almost every pixel "other_crop", so
the classes are its crop type inside its cropland and "non-cropland" outside; polygons are 50 m squares that the
reference gives one class throughout, points are pixel centres. Scores on them say that the pipeline learns what
the labels say, not how good a map is.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from shapely.geometry import Point, Polygon, box
from streamlit.testing.v1 import AppTest
from test_ui_pages import APP, messages

from cropcore.cli import main
from cropcore.errors import DatasetFormatError, NoItemsFoundError
from cropcore.labels import extract_pixels, labels_from_frame, read_labels, split_by_parcel
from cropcore.models import load_checkpoint, save_checkpoint
from cropcore.models.checkpoint import CHECKPOINT_DIR, list_checkpoints, resolve
from cropcore.pipeline import DEFAULT_MODEL, RunParams, load_season, run
from cropcore.settings import data_dir, home
from cropcore.ui.map import DEMO_BBOX

TRAIN = "pages/7_Train.py"
UTM = 32631  # the reference maps' grid: 10 m pixels, Belgium


def reference() -> xr.DataArray:
    """WorldCereal's class of each pixel of the demo patch (its crop type in its cropland, else non-cropland).

    A reference product (WorldCereal's model output), not ground truth.
    """
    root = data_dir("worldcereal") / "worldcereal"
    croptype = xr.open_dataset(root / "patch_croptype_reference.nc")["__xarray_dataarray_variable__"]
    cropland = xr.open_dataset(root / "patch_cropland_reference.nc")["__xarray_dataarray_variable__"]
    names = np.array([str(b).removeprefix("probability_") for b in croptype.bands.values[2:]] + ["non-cropland"])
    code = np.where(cropland.sel(bands="classification") == 1, croptype.sel(bands="classification"), len(names) - 1)
    return xr.DataArray(names[code], dims=("y", "x"), coords={"y": croptype.y, "x": croptype.x})


def squares(ref: xr.DataArray, per_class: int, *, seed: int = 0, size: int = 5) -> gpd.GeoDataFrame:
    """``per_class`` polygons of each class: ``size`` x ``size`` pixel squares of one reference class (UTM 31N)."""
    rows = []
    for i in range(0, ref.sizes["y"], size):
        for j in range(0, ref.sizes["x"], size):
            block = ref.values[i : i + size, j : j + size]
            if (block == block[0, 0]).all():
                west, north = float(ref.x[j]) - 5, float(ref.y[i]) + 5
                rows.append({"crop": block[0, 0], "geometry": box(west, north - 10 * size, west + 10 * size, north)})
    frame = gpd.GeoDataFrame(rows, crs=UTM)
    picked = [g.sample(min(per_class, len(g)), random_state=seed) for _, g in frame.groupby("crop")]
    return gpd.GeoDataFrame(pd.concat(picked), crs=UTM).reset_index(drop=True)


def points(ref: xr.DataArray, per_class: int, *, seed: int = 0) -> gpd.GeoDataFrame:
    """``per_class`` pixel centres of each class that has that many, in lon/lat."""
    rng = np.random.default_rng(seed)
    rows = []
    for name in np.unique(ref.values):
        ys, xs = np.nonzero(ref.values == name)
        if len(ys) >= per_class:
            for k in rng.choice(len(ys), per_class, replace=False):
                rows.append({"crop": name, "geometry": Point(float(ref.x[xs[k]]), float(ref.y[ys[k]]))})
    return gpd.GeoDataFrame(rows, crs=UTM).to_crs(4326)


@pytest.fixture(scope="module")
def ref() -> xr.DataArray:
    return reference()


@pytest.fixture
def models_written():
    """The user models written during a test (listed, then removed)."""
    folder = home() / "models"
    before = set(folder.glob("*")) if folder.exists() else set()
    written: list = []
    yield written
    after = set(folder.glob("*")) if folder.exists() else set()
    written += sorted(after - before)
    for path in written:
        path.unlink(missing_ok=True)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# --- a user file with errors: clear messages, nothing written -------------------------------------------------


def test_unknown_class_column_lists_the_columns(ref, tmp_path, capsys, models_written):
    path = tmp_path / "fields.geojson"
    squares(ref, 6).assign(Year=2021).to_crs(4326).to_file(path)
    with pytest.raises(DatasetFormatError, match=r"fields.geojson has no column 'Crop' \(did you mean 'crop'\?\); "
                                                 r"its columns are: crop, Year"):
        read_labels(path, "Crop")
    code, out, err = cli(capsys, "train", "--labels", str(path), "--class-column", "croptype", "--season", "2021")
    assert code == 2 and out == ""
    assert err.strip() == ("cropcore train: error: fields.geojson has no column 'croptype'; its columns are: crop, "
                           "Year")
    assert models_written == []


def test_empty_and_invalid_geometries_are_counted_and_dropped(ref, tmp_path):
    frame = squares(ref, 8).to_crs(4326)  # features 1-8 non-cropland, 9-16 other_crop
    frame.loc[[2, 9], "geometry"] = Polygon()
    frame.loc[4, "geometry"] = Polygon([(5.32, 50.63), (5.33, 50.635), (5.33, 50.63), (5.32, 50.635)])  # a bow tie
    frame.loc[5, "crop"] = None
    path = tmp_path / "fields.gpkg"
    frame.to_file(path)
    labels = read_labels(path, "crop")
    assert labels.counts() == {"non-cropland": 5, "other_crop": 7}
    assert list(labels.frame["parcel"]) == ["1", "2", "4", "7", "8", "9", *map(str, range(11, 17))]
    assert labels.warnings == (
        "left out 1 feature without a value in 'crop' (feature 6)",
        "left out 3 of 16 features: 2 with an empty geometry (features 3, 10); 1 invalid (feature 5; feature 5: "
        "Self-intersection[5.325 50.6325]; QGIS 'Fix geometries' repairs them)",
    )
    frame["geometry"] = Polygon()
    frame.to_file(path)
    with pytest.raises(DatasetFormatError, match="fields.gpkg has no usable geometry: all 16 features are unusable: "
                                                 r"16 with an empty geometry \(features 1, 2, 3, 4, 5 and 11 more\)"):
        read_labels(path, "crop")


def test_missing_crs_wrong_crs_and_too_few_labels(ref, tmp_path):
    frame = squares(ref, 6)
    frame.set_crs(None, allow_override=True).to_parquet(tmp_path / "no_crs.parquet")
    with pytest.raises(DatasetFormatError, match=r"no_crs.parquet has no coordinate reference system \(CRS\)"):
        read_labels(tmp_path / "no_crs.parquet", "crop")
    frame.set_crs(4326, allow_override=True).to_file(tmp_path / "utm_as_lonlat.geojson")
    with pytest.raises(DatasetFormatError, match=r"coordinates such as \(66\d{4}, 561\d{4}\) do not fit its CRS "
                                                 "EPSG:4326"):
        read_labels(tmp_path / "utm_as_lonlat.geojson", "crop")
    frame.iloc[:9].to_file(tmp_path / "few.gpkg")
    with pytest.raises(DatasetFormatError, match=r"few.gpkg: too few labels for 1 class: 'other_crop' \(3\); each "
                                                 "class needs at least 5"):
        read_labels(tmp_path / "few.gpkg", "crop")
    (tmp_path / "notes.gpkg").write_text("not a geopackage")
    with pytest.raises(DatasetFormatError, match=r"notes.gpkg cannot be read as GeoPackage"):
        read_labels(tmp_path / "notes.gpkg", "crop")


def test_labels_outside_the_scenes(ref, stac_api, tmp_path, capsys, models_written):
    near = squares(ref, 6).to_crs(4326)
    away = near.iloc[[0, 6]].copy()
    away["geometry"] = away.geometry.translate(xoff=0.03)  # 2 km east of the patch, still in Belgium
    path = tmp_path / "fields.geojson"
    pd.concat([near, away], ignore_index=True).to_file(path)
    labels = read_labels(path, "crop")
    pixels = extract_pixels(labels, load_checkpoint(DEFAULT_MODEL)[1], 2021)
    assert pixels.warnings[0].startswith(
        "left out 2 labels of 14 (features 13, 14) outside the 10 Sentinel-2 scenes found for Nov 2020 – Oct 2021: "
        "the labels span lon 5.3")
    assert "the scenes lon 5.3189 to 5.3334, lat 50.6286 to 50.6378" in pixels.warnings[0]
    assert set(np.unique(pixels.series.sample_id).astype(int)) == set(range(1, 13))

    france = near.copy()
    france["geometry"] = france.geometry.translate(xoff=-3.0, yoff=-2.0)
    france.to_file(path)
    with pytest.raises(NoItemsFoundError, match="none of the 12 labels lies in a Sentinel-2 scene"):
        extract_pixels(read_labels(path, "crop"), load_checkpoint(DEFAULT_MODEL)[1], 2021)
    code, out, err = cli(capsys, "train", "--labels", str(path), "--class-column", "crop", "--season", "2021")
    assert code == 3 and out == ""
    assert err.startswith("cropcore train: error: fields.geojson: none of the 12 labels lies in a Sentinel-2 scene "
                          "of catalog 'local' for the season Nov 2020 – Oct 2021 (the labels span lon 2.3")
    assert models_written == []


# --- extraction and split ------------------------------------------------------------------------------------


def test_points_take_their_pixel_and_polygons_their_inner_pixels(ref, stac_api):
    meta = load_checkpoint(DEFAULT_MODEL)[1]
    frame = pd.concat([points(ref, 5), squares(ref, 5).to_crs(4326)], ignore_index=True)
    labels = labels_from_frame(frame, "crop", name="labels")
    pixels = extract_pixels(labels, meta, 2021, max_pixels=20)
    series = pixels.series
    assert pixels.warnings == () and series.bands == meta.bands and series.time_axis == meta.time_axis.steps
    per_label = pd.Series(series.sample_id).value_counts().sort_index(key=lambda i: i.astype(int))
    is_point = frame.geom_type == "Point"
    assert list(per_label) == [1 if p else 20 for p in is_point]  # a point: its pixel; a 5 x 5 square: 25, 20 kept
    season = load_season(RunParams(DEMO_BBOX, "2020-11-01", "2021-10-31"), meta).reflectance
    lonlat = frame.geometry[is_point]
    for k, (lat, lon) in enumerate(series.latlon[: len(lonlat)]):  # the reflectance a crop map sees at the point
        assert abs(lat - lonlat.iloc[k].y) < 1e-4 and abs(lon - lonlat.iloc[k].x) < 1e-4
        utm = gpd.GeoSeries([lonlat.iloc[k]], crs=4326).to_crs(season.rio.crs).iloc[0]
        expected = season.sel(x=utm.x, y=utm.y, method="nearest").transpose("time", "band").values
        np.testing.assert_allclose(series.x[k], expected, rtol=1e-6)


def test_split_keeps_each_parcel_on_one_side_and_every_class_in_each():
    parcel = np.repeat(np.arange(30).astype(str), 4)
    y = np.repeat(np.arange(30) % 3, 4)
    train, val, test = split_by_parcel(parcel, y, seed=1)
    assert (train ^ val ^ test).all() and not (train & test).any()
    for part in (train, val, test):
        assert set(y[part]) == {0, 1, 2}
    assert not set(parcel[train]) & (set(parcel[val]) | set(parcel[test]))
    again = split_by_parcel(parcel, y, seed=1)
    assert all((a == b).all() for a, b in zip((train, val, test), again, strict=True))


def test_user_models_are_listed_after_the_shipped_ones(models_written):
    net, meta = load_checkpoint(DEFAULT_MODEL)
    save_checkpoint(home() / "models" / "my_fields.pt", net, meta)
    save_checkpoint(home() / "models" / f"{DEFAULT_MODEL}.pt", net, meta)  # a shipped name hides it
    names, shipped = list(list_checkpoints()), sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))
    assert names[: len(shipped)] == shipped and "my_fields" in names[len(shipped) :]
    assert names.count(DEFAULT_MODEL) == 1
    assert resolve("my_fields") == home() / "models" / "my_fields.pt"
    assert resolve(DEFAULT_MODEL) == CHECKPOINT_DIR / f"{DEFAULT_MODEL}.pt"


# --- end to end: labels -> train -> checkpoint -> map ----------------------------------------------------------


def test_train_on_reference_labels_then_map_with_the_model(ref, stac_api, tmp_path, capsys, models_written):
    path = tmp_path / "reference_fields.gpkg"
    squares(ref, 12).to_file(path)  # UTM 31N: reprojected to lon/lat on reading
    code, out, err = cli(capsys, "train", "--labels", str(path), "--class-column", "crop", "--season", "2021",
                         "--epochs", "4", "--name", "reference_fields")
    assert code == 0, err
    assert "F1 on the 4 held-out labels (100 pixels): network vs RandomForest" in out
    assert "macro-F1" in out and f"what the default model {DEFAULT_MODEL} calls your held-out pixels" in out
    assert "--model reference_fields --bbox 5.318" in out
    meta = load_checkpoint("reference_fields")[1]
    default = load_checkpoint(DEFAULT_MODEL)[1]
    assert meta.class_names == ["non-cropland", "other_crop"] and [c.is_crop for c in meta.legend] == [None, None]
    assert len(set(meta.colors.values())) == 2
    assert (meta.bands, meta.time_axis, meta.architecture) == (default.bands, default.time_axis, default.architecture)
    assert meta.metrics["network"]["macro_f1"] > 0.7 and "random_forest" in meta.metrics
    assert len(meta.test_sample_ids) == 4 and meta.extra["fine_tuned_from"]["name"] == DEFAULT_MODEL
    assert meta.norm.mean != default.norm.mean  # normalised with the labels' training split

    result = run(RunParams(DEMO_BBOX, "2020-11-01", "2021-10-31", model="reference_fields"))
    assert result.meta.name == "reference_fields"
    mapped = result.prediction["class"].sel(x=ref.x, y=ref.y, method="nearest").values
    truth = np.where(ref.values == "non-cropland", 0, 1)
    assert ((mapped == truth) & (mapped < 2)).mean() > 0.7  # agrees with the reference map it learnt from


def test_train_page_uploads_trains_compares_and_maps(ref, stac_api, models_written):
    frame = squares(ref, 8).to_crs(4326)
    at = AppTest.from_file(str(APP), default_timeout=300).switch_page(TRAIN).run()
    assert not at.exception
    at = at.get("file_uploader")[0].upload("survey.gpkg", b"crop\nmaize\n").run()
    assert "survey.gpkg cannot be read as GeoPackage" in messages(at.error)
    at = at.get("file_uploader")[0].upload("survey.geojson", frame.to_json().encode(), "application/geo+json").run()
    assert not at.exception and not at.error, messages(at.error)
    assert at.selectbox(key="widget.train_column").value == "crop"
    assert "16 polygons in 2 classes (survey.geojson, column 'crop')" in messages(at.caption)
    at.slider(key="widget.train_epochs").set_value(5)
    at = next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception and not at.error, messages(at.error)
    trained = at.session_state["cropcore.own_model"]
    assert trained.path.is_file() and trained.meta.name == "survey_crop_2021"
    assert {m.label for m in at.metric} >= {"Network macro-F1", "RandomForest macro-F1"}
    at = next(b for b in at.button if b.label.startswith("Map the current area")).click().run()
    assert not at.exception and not at.error, messages(at.error)
    assert at.session_state["cropcore.run"].meta.name == "survey_crop_2021"
    assert at.session_state["widget.model"] == "survey_crop_2021"
    assert [t.value for t in at.title] == ["Crop map"]
