"""Calibrated inference with a real checkpoint: temperature, cropland first, crop type within it, "uncertain";
and a model that takes each pixel's location (Presto)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import xarray as xr
from pyproj import Transformer

from cropcore.errors import ConfigError
from cropcore.inference.calibrate import Decision, with_min_confidence
from cropcore.inference.options import NODATA, UNCERTAIN, InferenceOptions
from cropcore.inference.predict import predict_map
from cropcore.models import Calibration, build_model, load_checkpoint, save_checkpoint, uses_location

# on the random test cube the shipped weights give a cropland probability of 0.22-0.82 (5th-95th percentile, median
# 0.49, at T = 2): a threshold of 0.5 splits it in two
CALIBRATION = Calibration(temperature=2.0, min_confidence=0.45, target_precision=0.9, cropland_threshold=0.5,
                          fitted_on="validation split")
OPTIONS = InferenceOptions(tile=32, overlap=8, amp=False)


@pytest.fixture(scope="module")
def shipped():
    """The shipped weights without their calibration (the baseline the calibrated copies are compared with)."""
    model, meta = load_checkpoint("tempcnn_worldcereal")
    return model, replace(meta, calibration=None)


@pytest.fixture(scope="module")
def calibrated(shipped, tmp_path_factory):
    """A copy of the shipped checkpoint with a calibration, saved and loaded back as users would."""
    model, meta = shipped
    path = tmp_path_factory.mktemp("checkpoints") / "calibrated.pt"
    save_checkpoint(path, model, replace(meta, calibration=CALIBRATION))
    return load_checkpoint(path)


def cube(meta, height=48, width=56, seed=3, crs=None):
    rng = np.random.default_rng(seed)
    data = rng.uniform(0.0, 0.4, (12, len(meta.bands), height, width)).astype("float32")
    data[:, :, :2, :4] = np.nan  # a corner without data
    out = xr.DataArray(data, dims=("time", "band", "y", "x"), coords={
        "band": list(meta.bands), "y": 5612115.0 - 10 * np.arange(height), "x": 664005.0 + 10 * np.arange(width)})
    return out if crs is None else out.rio.write_crs(crs)


@pytest.fixture(scope="module")
def maps(shipped, calibrated):
    """The same cube mapped by the shipped checkpoint and by its calibrated copy (probabilities kept)."""
    data = cube(shipped[1])
    return (predict_map(data, *shipped[:1], meta=shipped[1], options=OPTIONS, probabilities=True),
            predict_map(data, *calibrated[:1], meta=calibrated[1], options=OPTIONS, probabilities=True))


def test_the_calibration_survives_the_checkpoint_file(calibrated):
    assert calibrated[1].calibration == CALIBRATION


def test_temperature_changes_confidences_not_the_most_probable_class(maps):
    raw, cal = maps
    valid = raw["class"].values != NODATA
    p, q = raw["probability"].values[:, valid], cal["probability"].values[:, valid]
    np.testing.assert_array_equal(p.argmax(0), q.argmax(0))
    sharpened = p ** (1 / CALIBRATION.temperature)  # softmax(z / T) is softmax(z) ** (1 / T), renormalised
    np.testing.assert_allclose(q, sharpened / sharpened.sum(0), atol=1e-5)
    assert (q.max(0) < p.max(0) - 0.01).mean() > 0.9  # T > 1 softens
    chosen = q[cal["class_raw"].values[valid], np.arange(q.shape[1])]  # the probability of the mapped class
    np.testing.assert_allclose(cal["confidence"].values[valid], chosen, atol=1e-6)


def test_crop_type_within_cropland(maps, calibrated):
    _, cal = maps
    meta = calibrated[1]
    valid = cal["class"].values != NODATA
    q = cal["probability"].values[:, valid]
    crops = np.array(meta.crop_ids)
    p_crop = q[crops].sum(0)
    cropland = p_crop >= CALIBRATION.cropland_threshold
    assert 0.05 < cropland.mean() < 0.95  # both sides present on this cube
    expected = np.where(cropland, crops[q[crops].argmax(0)], 0)  # class 0 is the only non-crop class
    np.testing.assert_array_equal(cal["class_raw"].values[valid], expected)
    assert (expected != q.argmax(0)).any()  # the rule is not the plain argmax
    np.testing.assert_array_equal(cal["cropland"].values[valid], np.rint(p_crop * 100).astype("uint8"))
    assert (cal["cropland"].values[~valid] == NODATA).all()


def test_uncertain_exactly_below_the_minimum_confidence(maps, calibrated, shipped):
    _, cal = maps
    valid = cal["class_raw"].values != NODATA
    confidence, classes, raw = cal["confidence"].values, cal["class"].values, cal["class_raw"].values
    below = valid & (confidence < CALIBRATION.min_confidence)
    assert 0 < below.sum() < valid.sum()
    np.testing.assert_array_equal(classes == UNCERTAIN, below)
    np.testing.assert_array_equal(classes[valid & ~below], raw[valid & ~below])
    assert (classes[~valid] == NODATA).all()
    # another threshold without running the model, and with it: the same map
    moved = with_min_confidence(cal, 0.7)
    again = predict_map(cube(shipped[1]), calibrated[0], meta=calibrated[1],
                        options=replace(OPTIONS, min_confidence=0.7))
    np.testing.assert_array_equal(moved["class"].values, again["class"].values)
    np.testing.assert_array_equal(moved["class"].values == UNCERTAIN, valid & (confidence < 0.7))
    assert (with_min_confidence(cal, 0.0)["class"].values == raw).all()
    with pytest.raises(ConfigError, match="between 0 and 1"):
        with_min_confidence(cal, 1.5)


def test_an_uncalibrated_checkpoint_keeps_its_map(maps, shipped):
    raw, _ = maps
    p = raw["probability"].values
    valid = raw["class"].values != NODATA
    np.testing.assert_array_equal(raw["class"].values[valid], p.argmax(0)[valid])  # most probable class
    np.testing.assert_array_equal(raw["class"].values, raw["class_raw"].values)  # nothing uncertain
    np.testing.assert_array_equal(raw["confidence"].values[valid], p.max(0)[valid].astype("float32"))
    decision = Decision.for_model(shipped[1])
    assert not decision.two_level and decision.temperature == 1 and decision.min_confidence == 0
    assert decision.manifest()["min_confidence_source"] == "default"
    assert Decision.for_model(shipped[1], 0.3).manifest()["min_confidence_source"] == "user"


@pytest.fixture(scope="module")
def presto(shipped):
    """The registered Presto classifier (randomly initialised) on the shipped default's bands and season."""
    meta = shipped[1]
    kwargs = {"in_channels": len(meta.bands), "num_classes": meta.num_classes, "bands": list(meta.bands),
              "months": [int(step[1:]) for step in meta.time_axis.steps]}
    torch.manual_seed(0)
    return build_model("presto", **kwargs).eval(), replace(meta, architecture="presto", model_kwargs=kwargs)


def test_presto_gets_each_pixel_centres_location(presto):
    model, meta = presto
    assert uses_location("presto")
    seen: list[torch.Tensor] = []
    hook = model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["latlon"].clone()),
                                           with_kwargs=True)
    data = cube(meta, 40, 36, crs="EPSG:32631")
    try:
        tiled = predict_map(data, model, meta=meta, options=InferenceOptions(tile=16, overlap=0, amp=False),
                            probabilities=True)
    finally:
        hook.remove()
    got = np.unique(torch.cat(seen).numpy(), axis=0)  # the last tiles of a row overlap the previous ones
    xx, yy = np.meshgrid(data["x"].values, data["y"].values)
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(xx, yy)
    expected = np.unique(np.stack([lat, lon], -1).reshape(-1, 2).astype("float32"), axis=0)
    assert 50.6 < lat.mean() < 50.7 and 5.3 < lon.mean() < 5.4  # the demo patch, in Belgium
    np.testing.assert_array_equal(got, expected)
    whole = predict_map(data, model, meta=meta, options=InferenceOptions(tile=64, overlap=0, amp=False),
                        probabilities=True)
    np.testing.assert_allclose(tiled["probability"].values, whole["probability"].values, atol=1e-6)  # tiling-free


@pytest.mark.slow
def test_presto_on_two_cpu_workers(presto):
    model, meta = presto
    data = cube(meta, 40, 36, crs="EPSG:32631")
    one = predict_map(data, model, meta=meta, options=InferenceOptions(tile=16, overlap=0, amp=False))
    two = predict_map(data, model, meta=meta, options=InferenceOptions(tile=16, overlap=0, amp=False, devices="cpu:2"))
    np.testing.assert_array_equal(one["class"].values, two["class"].values)


def test_a_model_that_takes_location_needs_a_crs(presto):
    model, meta = presto
    with pytest.raises(ConfigError, match="no CRS"):
        predict_map(cube(meta), model, meta=meta, options=OPTIONS)
