"""Data-parallel training of a patch model with 2 CPU processes (gloo): replicas stay identical, each rank
gets its own patches, and the learning rate follows base_lr x processes x batch / 256."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cropcore.patches.config import load_patch_config
from cropcore.patches.data import read_npz
from cropcore.patches.ddp import ReplicaCheck, ddp_strategy
from cropcore.patches.module import scaled_lr
from cropcore.patches.train import fit
from cropcore.settings import PROJECT_ROOT


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_replicas_identical(tmp_path) -> None:
    config = load_patch_config(PROJECT_ROOT / "configs" / "patch_smallcnn_agri.yaml")
    config = dataclasses.replace(config, model_kwargs={**config.model_kwargs, "width": 4},
                                 data={**config.data, "batch_size": 4}, trainer={**config.trainer, "max_epochs": 1})
    patches = read_npz()
    train = patches.subset(slice(0, 16))
    report = tmp_path / "replicas.json"
    fit(config, train, devices=2, strategy=ddp_strategy("cpu", spawn=True), callbacks=[ReplicaCheck(report)],
        max_steps=3)
    result = json.loads(report.read_text())
    assert result["world"] == 2 and result["steps"] == 2  # 16 patches / 2 ranks / batch 4: 2 steps per epoch
    assert result["inputs_differ"]
    assert result["grad_max_diff"] < 1e-6
    assert result["weight_max_diff"] < 1e-6
    assert result["lr"] == pytest.approx(scaled_lr(config.optim["base_lr"], 2, 4, 256))
    assert result["lr"] == pytest.approx(config.optim["base_lr"] * 2 * 4 / 256)
