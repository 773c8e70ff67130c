"""A calibrated checkpoint end to end on the demo patch: cropland first, crop type within it, "uncertain" pixels
in the map, the cropland COG, the areas and the manifest; ``predict --min-confidence``."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import rasterio

from cropcore.inference.options import NODATA, UNCERTAIN
from cropcore.inference.predict import predict_map
from cropcore.models import Calibration, load_checkpoint, save_checkpoint
from cropcore.pipeline import RunParams, export_run, run

DEMO = (5.3189, 50.6286, 5.3334, 50.6378)
CALIBRATION = Calibration(temperature=1.5, min_confidence=0.5, target_precision=0.9, cropland_threshold=0.55,
                          fitted_on="validation split")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The shipped default with a calibration, as a checkpoint file."""
    model, meta = load_checkpoint("tempcnn_worldcereal")
    return save_checkpoint(tmp_path_factory.mktemp("models") / "calibrated.pt", model,
                           replace(meta, calibration=CALIBRATION))


@pytest.fixture(scope="module")
def calibrated_run(stac_api, checkpoint):
    return run(RunParams(aoi=DEMO, start="2020-11-01", end="2021-10-31", catalog=stac_api, model=str(checkpoint)))


def test_cropland_and_uncertain_on_the_demo_patch(calibrated_run, checkpoint, tmp_path):
    result = calibrated_run
    paths = export_run(result, tmp_path)
    model, meta = load_checkpoint(checkpoint)
    probability = predict_map(result.reflectance, model, meta=meta, options=result.params.inference,
                              probabilities=True)["probability"].values
    with rasterio.open(paths["map"]) as ds:
        classes = ds.read(1)
    with rasterio.open(paths["confidence"]) as ds:
        confidence = ds.read(1)
    with rasterio.open(paths["cropland"]) as ds:
        cropland = ds.read(1)
    valid = classes != NODATA
    p_crop = probability[list(meta.crop_ids)].sum(0)
    # the cropland COG is the summed probability of the crop classes, in percent
    np.testing.assert_array_equal(cropland[valid], np.rint(p_crop[valid] * 100))
    assert (cropland[~valid] == NODATA).all()
    # uncertain exactly where the calibrated confidence is below the checkpoint's threshold
    uncertain = classes == UNCERTAIN
    assert 0.01 < uncertain[valid].mean() < 0.9
    np.testing.assert_array_equal(uncertain, valid & (confidence < CALIBRATION.min_confidence))
    # the others: a crop class on cropland, the non-crop class elsewhere
    kept = valid & ~uncertain
    is_crop = np.isin(classes, meta.crop_ids)
    np.testing.assert_array_equal(is_crop[kept], p_crop[kept] >= CALIBRATION.cropland_threshold)

    areas = pd.read_csv(paths["areas"])
    parts = areas[areas["kind"] != "total"]
    assert parts["pixels"].sum() == valid.sum()
    assert parts["hectares"].sum() == pytest.approx(valid.sum() * 100 / 1e4)  # 10 m pixels: the mapped area
    row = areas.set_index("kind").loc["uncertain"]
    assert row["class"] == "uncertain" and row["pixels"] == uncertain.sum()
    total = areas.set_index("kind").loc["total"]
    assert total["class"] == "cropland" and total["pixels"] == (is_crop & kept).sum()

    manifest = json.loads(paths["manifest"].read_text())["calibration"]
    assert manifest == {
        "temperature": 1.5, "temperature_source": "checkpoint", "min_confidence": 0.5,
        "min_confidence_source": "checkpoint", "cropland_threshold": 0.55, "cropland_threshold_source": "checkpoint",
        "classes": "crop type within cropland", "target_precision": 0.9, "fitted_on": "validation split"}


def test_another_threshold_without_running_the_model(calibrated_run):
    result = calibrated_run
    moved = result.with_min_confidence(0.7)
    confidence = result.prediction["confidence"].values
    raw = result.prediction["class_raw"].values
    expected = np.where((raw != NODATA) & (confidence < 0.7), UNCERTAIN, raw)
    np.testing.assert_array_equal(moved.prediction["class"].values, expected)
    assert moved.manifest()["calibration"]["min_confidence"] == 0.7
    assert moved.manifest()["calibration"]["min_confidence_source"] == "user"
    assert result.manifest()["calibration"]["min_confidence_source"] == "checkpoint"  # the run itself unchanged


def test_predict_cli_min_confidence(stac_api, checkpoint, tmp_path):
    out = tmp_path / "map.tif"
    proc = subprocess.run([sys.executable, "-m", "cropcore", "predict", "--bbox", *map(str, DEMO), "--start",
                           "2020-11-01", "--end", "2021-10-31", "--catalog", stac_api, "--model", str(checkpoint),
                           "--out", str(out), "--min-confidence", "0.6"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as ds:
        classes = ds.read(1)
        assert json.loads(ds.tags()["MANIFEST"])["calibration"]["min_confidence_source"] == "user"
    with rasterio.open(tmp_path / "map_confidence.tif") as ds:
        confidence = ds.read(1)
    valid = classes != NODATA
    np.testing.assert_array_equal(classes == UNCERTAIN, valid & (confidence < 0.6))
    share = 100 * (classes == UNCERTAIN).sum() / valid.sum()
    assert f"uncertain: {share:.1f} % of the mapped area (confidence below 0.60, --min-confidence)" in proc.stdout
    assert "cropland: " in proc.stdout
