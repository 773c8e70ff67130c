"""Patch training pieces: config refusal, the LR rule and schedule, metrics, checkpoints, scoring and the
``evaluate`` path on the real patches with the shipped checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cropcore.cli import main
from cropcore.errors import CheckpointError, ConfigError, ShapeError
from cropcore.patches.checkpoint import (
    is_patch_checkpoint,
    list_patch_checkpoints,
    load_patch_checkpoint,
    save_patch_checkpoint,
)
from cropcore.patches.config import is_patch_config, load_patch_config
from cropcore.patches.data import read_npz
from cropcore.patches.metrics import (
    binary_report,
    gate_report,
    majority_binary,
    multilabel_report,
    recall_threshold,
    tune_thresholds,
)
from cropcore.patches.module import lr_factor, scaled_lr
from cropcore.patches.predict import PatchClassifier
from cropcore.patches.registry import build_patch_model
from cropcore.settings import PROJECT_ROOT

CONFIGS = sorted((PROJECT_ROOT / "configs").glob("patch_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load(path) -> None:
    config = load_patch_config(path)
    assert is_patch_config(path) and config.task in ("multilabel", "binary")
    assert config.optim["base_lr"] == 0.1 and config.optim["reference_batch"] == 256  # Sedona et al. 2019
    assert config.optim["warmup_epochs"] == 5
    build_patch_model(config.model, **config.model_kwargs)


def test_time_series_configs_are_not_patch_configs() -> None:
    assert not is_patch_config(PROJECT_ROOT / "configs" / "tempcnn_worldcereal.yaml")


def test_unknown_keys_and_tasks_are_refused(tmp_path) -> None:
    text = (PROJECT_ROOT / "configs" / "patch_smallcnn_agri.yaml").read_text()
    for bad, message in [(text + "epochs: 3\n", r"unknown keys \['epochs'\]"),
                         (text.replace("base_lr:", "lr:"), r"unknown keys \['optim.lr'\]"),
                         (text.replace("task: binary", "task: segmentation"), "task must be one of")]:
        path = tmp_path / "bad.yaml"
        path.write_text(bad)
        with pytest.raises(ConfigError, match=message):
            load_patch_config(path)


def test_lr_rule_warmup_and_step_decay() -> None:
    assert scaled_lr(0.1, 4, 64, 256) == pytest.approx(0.1)  # 0.1 x k x n / 256
    assert scaled_lr(0.1, 2, 16, 256) == pytest.approx(0.0125)
    kw = {"steps_per_epoch": 10, "warmup_epochs": 5, "milestones": [30, 60], "gamma": 0.1}
    assert lr_factor(0, **kw) == pytest.approx(1 / 50)
    assert lr_factor(24, **kw) == pytest.approx(25 / 50)  # linear over the first 5 epochs
    assert lr_factor(50, **kw) == 1.0
    assert lr_factor(299, **kw) == 1.0 and lr_factor(300, **kw) == pytest.approx(0.1)
    assert lr_factor(600, **kw) == pytest.approx(0.01)


def test_binary_metrics_match_hand_counts(tmp_path) -> None:
    probs = np.array([0.9, 0.8, 0.3, 0.6, 0.1, 0.2])
    truth = np.array([1, 1, 1, 0, 0, 0])
    report = binary_report(probs, truth, 0.5)
    assert report["confusion_matrix"] == [[2, 1], [1, 2]]
    assert report["accuracy"] == pytest.approx(4 / 6) and report["recall"] == pytest.approx(2 / 3)
    assert report["roc_auc"] == pytest.approx(8 / 9)
    base = majority_binary(np.array([1, 1, 0]), truth)
    assert base["recall"] == 1.0 and base["accuracy"] == 0.5 and base["roc_auc"] == 0.5


def test_gate_threshold_keeps_every_validation_positive() -> None:
    probs = np.array([0.9, 0.42, 0.3, 0.6, 0.1, 0.2])
    truth = np.array([1, 1, 0, 0, 0, 1])
    assert recall_threshold(probs, truth) == pytest.approx(0.15)  # highest grid value below the 0.2 positive
    assert recall_threshold(probs, truth, recall=0.6) == pytest.approx(0.4)
    gate = gate_report(probs, truth, 0.25)
    assert gate["recall"] == pytest.approx(2 / 3) and gate["skipped_share"] == pytest.approx(1 / 3)


def test_multilabel_metrics_and_tuned_thresholds() -> None:
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], np.float32)
    probs = np.array([[0.4, 0.1, 0.2], [0.35, 0.9, 0.1], [0.1, 0.7, 0.3], [0.2, 0.2, 0.1]], np.float32)
    thresholds = tune_thresholds(probs, truth)
    assert thresholds[0] == pytest.approx(0.25) and thresholds[2] == 0.5  # first grid value > 0.2; c: no positive
    report = multilabel_report(probs, truth, thresholds, ["a", "b", "c"])
    assert report["micro_f1"] == 1.0 and report["macro_f1"] == 1.0 and report["map"] == 1.0
    assert report["per_class"]["c"]["ap"] is None and report["per_class"]["a"]["support"] == 2


def test_checkpoint_round_trip_in_fp16(tmp_path) -> None:
    model = build_patch_model("small_cnn", width=4).eval()
    meta = {"name": "t", "architecture": "small_cnn", "model_kwargs": {"width": 4}, "task": "binary",
            "bands": ["b"] * 12, "norm": {"mean": [0.0] * 12, "std": [1.0] * 12}, "threshold": 0.4}
    path = save_patch_checkpoint(tmp_path / "t.pth", model, meta, fp16=True)
    loaded, back = load_patch_checkpoint(path)
    assert back == meta and is_patch_checkpoint(path)
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.randn(2, 12, 40, 40)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-2)
    torch.save({"format": "other"}, tmp_path / "other.pth")
    assert not is_patch_checkpoint(tmp_path / "other.pth") and not is_patch_checkpoint("tempcnn_worldcereal")
    with pytest.raises(CheckpointError, match="not a cropcore-patch-checkpoint/1 file"):
        load_patch_checkpoint(tmp_path / "other.pth")


SHIPPED = ("patch_resnet50_ben19", "patch_smallcnn_agri", "patch_cnnvit_agri")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoints_score_reflectance_patches(name: str) -> None:
    assert name in list_patch_checkpoints()
    classifier = PatchClassifier(name)
    patches = read_npz()
    scores = classifier.score(patches.x[:3])
    assert scores.agri.shape == (3,) and np.all((scores.agri >= 0) & (scores.agri <= 1))
    assert (scores.labels is None) == (classifier.meta["task"] == "binary")
    assert classifier.score(patches.x[0]).agri.shape == (1,)  # one (12, H, W) patch
    with pytest.raises(ShapeError, match="patches must be"):
        classifier.score(patches.x[:1, :10])
    assert (classifier.gate_threshold is None) == (classifier.meta["task"] != "binary")
    held_out = set(classifier.meta["test_names"])
    assert held_out and held_out <= set(patches.names) and classifier.meta["train_patches"] < 124


@pytest.mark.slow
@pytest.mark.parametrize("name", ["patch_smallcnn_agri", "patch_resnet50_ben19"])
def test_evaluate_command_scores_held_out_real_patches(name: str, tmp_path, capsys) -> None:
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--checkpoint", name, "--data", "bigearthnet/ben_real_s2_patches.npz", "--split", "test",
                 "--out", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    report = json.loads(out.read_text())
    meta = load_patch_checkpoint(name)[1]
    assert report["n"] == len(meta["test_names"])
    if report["task"] == "binary":
        assert "recall" in report and "ROC-AUC" in stdout and out.with_suffix(".png").stat().st_size > 1000
        assert report["f1"] == pytest.approx(meta["metrics_fold0"]["f1"], abs=2e-3)  # fp16 storage
    else:
        assert "mAP" in stdout
        assert report["map"] == pytest.approx(meta["metrics_fold0"]["map"], abs=2e-2)


def test_train_command_cross_validates_a_patch_config(tmp_path, capsys) -> None:
    config = (PROJECT_ROOT / "configs" / "patch_smallcnn_agri.yaml").read_text()
    config = (config.replace("width: 16", "width: 4").replace("folds: 5", "folds: 3")
              .replace("max_epochs: 24", "max_epochs: 1").replace("name: patch_smallcnn_agri", "name: test_patch_cli")
              .replace("output: cropcore/checkpoints/patch_smallcnn_agri.pth", "output: null"))
    path = tmp_path / "patch_tiny.yaml"
    path.write_text(config)
    assert main(["train", "--config", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "124 patches in 49 place groups, 3 folds" in printed and "recall" in printed and "majority" in printed
    assert main(["train", "--config", str(path), "--resume", "x.ckpt"]) == 2
    assert "--resume does not apply to patch configs" in capsys.readouterr().err
