"""The ``predict`` gate (:mod:`cropcore.patches.gate`): skipped tiles are not run, their pixels are no data, every
other pixel is as in the ungated map, the manifest says why; the CLI flag. Real demo scenes from the embedded STAC
API and the shipped checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from cropcore import pipeline
from cropcore.errors import ConfigError
from cropcore.inference import predict as inference_predict
from cropcore.inference.options import NODATA, InferenceOptions
from cropcore.inference.predict import predict_map
from cropcore.inference.reader import WindowReader
from cropcore.inference.tiling import Blender
from cropcore.models import load_checkpoint
from cropcore.patches import gate as gate_module
from cropcore.patches.gate import RECALL_WARNING, decide
from cropcore.ui.map import DEMO_BBOX
from cropcore.ui.search import DEMO_AOI


@pytest.fixture(scope="module")
def demo(stac_api) -> pipeline.RunResult:
    return pipeline.run(pipeline.RunParams(DEMO_AOI, "2020-11-01", "2021-10-31", catalog=stac_api, max_cloud=None))


def test_blender_leaves_out_tiles_wholly_in_the_skip_mask():
    skip = np.zeros((100, 100), bool)
    skip[:, :60] = True
    blocks = []
    blender = Blender(1, 100, 100, tile=32, overlap=8, emit=lambda r, c, b: blocks.append((r, c, b)), skip=skip)
    assert all(skip[t.slices].all() for i, t in enumerate(blender.tiles) if i in blender.skipped)
    assert len(blender.run_tiles) + len(blender.skipped) == len(blender.tiles) and blender.skipped
    blender.fill_skipped()
    for t in blender.run_tiles:
        blender.add(t, np.ones((1, t.height, t.width), np.float32))
    out = np.full((100, 100), np.nan)
    for r, c, b in blocks:
        out[r:r + b.shape[1], c:c + b.shape[2]] = b[0]
    assert (out[~skip] == 1).all() and np.isfinite(out).all()
    with pytest.raises(ConfigError, match="skip mask"):
        Blender(1, 10, 10, tile=4, overlap=0, emit=print, skip=np.zeros((5, 5), bool))


@pytest.mark.parametrize("model", ["tempcnn_worldcereal", "agrunet_worldcereal"])
def test_skipped_tiles_are_not_run_and_the_rest_of_the_map_is_unchanged(demo, model, monkeypatch):
    net, meta = load_checkpoint(model)
    refl = demo.reflectance.sel(band=list(meta.bands))
    options = InferenceOptions(tile=32, overlap=8, strip=None, devices="cpu", amp=False)
    full = predict_map(refl, net, meta=meta, options=options)
    skip = np.zeros(full["class"].shape, bool)
    skip[:, :50] = True
    read = []
    real_read = WindowReader.read
    monkeypatch.setattr(WindowReader, "read", lambda self, ys, xs: read.append((ys, xs)) or real_read(self, ys, xs))
    gated = predict_map(refl, net, meta=meta, options=options, skip=skip)
    assert gated.attrs["timings"]["skipped_tiles"] > 0
    assert read and not any(skip[ys, xs].all() for ys, xs in read)  # no skipped tile was read (so none was run)
    for layer in ("class", "class_raw"):
        a, b = np.asarray(full[layer]), np.asarray(gated[layer])
        assert (b[skip] == NODATA).all()
        np.testing.assert_array_equal(a[~skip], b[~skip])
    assert np.isnan(np.asarray(gated["confidence"])[skip]).all()


def test_gate_rule_mask_and_manifest(demo):
    from cropcore.patches.tiles import score_tiles
    from cropcore.stac.catalog import search_items

    items = search_items(DEMO_AOI, ("2020-11-01", "2021-10-31"), catalog=demo.search.url, max_cloud=None).items
    gate = gate_module.non_agri_gate(items, DEMO_AOI, "2020-11-01", "2021-10-31", demo.reflectance)
    assert gate.threshold == gate.scores.gate_threshold and gate.scores.labels is None
    assert gate.skipped.tolist() == [bool(gate.scores.agri[0] <= gate.threshold)]
    forced = decide(gate.scores, threshold=1.0)  # everything at or below 1: skipped
    assert forced.skipped.all() and forced.mask().all()
    record = forced.manifest()
    assert record["value"] == NODATA and "gate threshold" in record["reason"]
    assert record["skipped_tiles"] == 1 and record["skipped_pixels"] == 106 * 106
    assert record["filled_bands"] == {"B01": "B02", "B8A": "B08", "B09": "B08"}
    assert record["skipped"][0]["row"] == 0 and len(record["skipped"][0]["bounds_lonlat"]) == 4
    assert not decide(gate.scores, threshold=0.0).skipped.any()
    nodata = replace(gate.scores, valid=np.zeros(1))
    assert not decide(nodata, threshold=1.0).skipped.any()  # a tile without data is never "sure"
    with pytest.raises(ConfigError, match="no gate threshold"):
        decide(replace(gate.scores, gate_threshold=None))
    with pytest.raises(ConfigError, match="bands"):
        score_tiles(demo.reflectance)


def test_gated_run_records_the_gate_in_the_manifest(demo, monkeypatch):
    gated = pipeline.run(replace(demo.params, skip_non_agri=True))
    record = gated.manifest()["gate"]
    assert record["model"] == "patch_cnnvit_agri" and record["tiles"] == 1
    assert "gate" in gated.timings and gated.manifest()["parameters"]["skip_non_agri"] is True
    assert "gate" not in demo.manifest()
    if record["skipped_tiles"] == 0:  # the demo tile scores above the stored threshold: the map is the same
        np.testing.assert_array_equal(np.asarray(gated.prediction["class"]), np.asarray(demo.prediction["class"]))
    # a gate sure of everything: nothing is run and every pixel is no data
    monkeypatch.setattr(gate_module, "decide", lambda scores: decide(scores, threshold=1.0))
    calls = []
    real = inference_predict.Runner.logits
    monkeypatch.setattr(inference_predict.Runner, "logits", lambda self, *a: calls.append(1) or real(self, *a))
    skipped = pipeline.run(replace(demo.params, skip_non_agri=True))
    assert not calls and (np.asarray(skipped.prediction["class"]) == NODATA).all()
    assert skipped.manifest()["gate"]["skipped_tiles"] == 1


def cropcore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cropcore", *args], capture_output=True, text=True, timeout=300)


def test_predict_cli_flag_warns_and_writes_the_gate_into_the_manifest(stac_api, tmp_path):
    out = tmp_path / "map.tif"
    common = ("predict", "--bbox", *map(str, DEMO_BBOX), "--start", "2020-11-01", "--end", "2021-10-31",
              "--catalog", stac_api, "--precision", "fp32")
    proc = cropcore(*common, "--out", str(out), "--skip-non-agri")
    assert proc.returncode == 0, proc.stderr
    assert RECALL_WARNING in proc.stderr and "gate: 0 of 1 tiles skipped" in proc.stdout
    manifest = json.loads((tmp_path / "map.json").read_text())
    assert manifest["gate"]["tiles"] == 1 and manifest["parameters"]["skip_non_agri"] is True
    plain = cropcore(*common, "--out", str(tmp_path / "plain.tif"))
    assert plain.returncode == 0 and "skip-non-agri" not in plain.stderr and "gate" not in plain.stdout


def test_predict_cli_gate_refuses_a_cluster_before_any_work(stac_api, tmp_path):
    proc = cropcore("predict", "--bbox", *map(str, DEMO_BBOX), "--start", "2020-11-01", "--end", "2021-10-31",
                    "--catalog", stac_api, "--out", str(tmp_path / "map.tif"), "--skip-non-agri",
                    "--scheduler", "tcp://127.0.0.1:1")
    assert proc.returncode == 2 and "--skip-non-agri runs on this machine only" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())
