"""Lightning training (fast_dev_run, DDP on 2 CPU processes) and the evaluate CLI on real data."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from cropcore.cli import main
from cropcore.settings import data_dir
from cropcore.training import CropModule, PointDataModule, TrainConfig, run
from cropcore.training.augment import Augment, augment, mixup
from cropcore.training.module import lr_lambda

WC = "worldcereal/2023_FRA_LPIS_POLY_110_dekad.geoparquet"
KW = {"in_channels": 9, "num_classes": 6, "seq_len": 12, "hidden": 8, "fc": 16}


def test_fast_dev_run_on_cpu():
    config = TrainConfig(name="test_fast", model="tempcnn", model_kwargs=KW,
                         data={"kind": "worldcereal", "paths": [WC], "batch_size": 8}, trainer={"accelerator": "cpu"})
    assert run(config, fast_dev_run=True, devices=1) == {}


def test_agrunet_fast_dev_run_on_composed_patches():
    config = TrainConfig(name="test_fast_agrunet", model="agrunet",
                         model_kwargs={"in_channels": 9, "num_classes": 6, "widths": [4, 8, 8]},
                         data={"kind": "worldcereal", "paths": [WC], "batch_size": 4,
                               "patches": {"size": 16, "train_patches": 8, "eval_patches": 4}},
                         augment={"mixup_alpha": 0.4}, trainer={"accelerator": "cpu"})
    assert run(config, fast_dev_run=True, devices=1) == {}


def test_mixup_mixes_partners_and_keeps_both_masks():
    torch.manual_seed(0)
    x = torch.arange(4.0).reshape(4, 1, 1).expand(4, 3, 2)
    mask = torch.tensor([[True, False, False]] * 2 + [[False, False, True]] * 2)
    mixed, mixed_mask, perm, lam = mixup(x, mask, 0.4)
    assert 0.5 <= lam <= 1.0 and sorted(perm.tolist()) == [0, 1, 2, 3]
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    assert torch.equal(mixed_mask, mask | mask[perm])


def test_schedule_and_augment():
    assert lr_lambda(0, warmup=10, total=100) == pytest.approx(0.1)
    assert lr_lambda(10, warmup=10, total=100) == pytest.approx(1.0)
    assert lr_lambda(100, warmup=10, total=100) == pytest.approx(0.0)
    x, mask = torch.ones(2, 5, 3, 4, 4), torch.ones(2, 5, dtype=torch.bool)
    y = torch.arange(16).reshape(1, 4, 4).repeat(2, 1, 1)
    xa, ma, ya = augment(x * y[:, None, None], mask, y, Augment(date_dropout=0.5, flips=True))
    assert (xa.sum(2)[:, :, ...] == 0).any() or ma.all()
    kept = ma[0].nonzero()[0, 0] if ma[0].any() else None
    if kept is not None:  # image and labels stay aligned after flips/rot90
        torch.testing.assert_close(xa[0, kept, 0], ya[0].float())


@pytest.mark.slow
def test_ddp_step_with_two_cpu_processes():
    dm = PointDataModule("worldcereal", [WC], batch_size=8)
    module = CropModule("tempcnn", KW, batch_size=8)
    ddp = DDPStrategy(start_method="spawn", process_group_backend="gloo")
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=ddp, max_steps=2, limit_val_batches=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer.fit(module, datamodule=dm)  # the spawned ranks send the trained weights back
    assert trainer.world_size == 2
    assert any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


@pytest.mark.parametrize("checkpoint", ["tempcnn_worldcereal", "agrunet_worldcereal"])
def test_evaluate_cli_on_a_slice_of_real_data(tmp_path, capsys, checkpoint):
    table = pd.read_parquet(data_dir(WC) / WC)
    ids = table["sample_id"].drop_duplicates().iloc[:40]
    sliced = tmp_path / "slice.parquet"
    table[table["sample_id"].isin(ids)].to_parquet(sliced)
    (tmp_path / "class_mappings.json").write_bytes((data_dir(WC) / "worldcereal/class_mappings.json").read_bytes())
    out = tmp_path / "report.json"
    assert main(["evaluate", "--checkpoint", checkpoint, "--data", str(sliced), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert 0 < report["n"] <= 40 and len(report["confusion_matrix"]) == 6
    assert "macro-F1" in capsys.readouterr().out


def test_evaluate_cli_rejects_a_mismatched_checkpoint(capsys):
    csv = data_dir("dl4sits") / "dl4sits/test_dataset.csv"
    assert main(["evaluate", "--checkpoint", "tempcnn_worldcereal", "--data", str(csv)]) == 2
    assert "expects bands" in capsys.readouterr().err


@pytest.mark.parametrize("checkpoint", ["tempcnn_worldcereal", "presto_worldcereal", "agrunet_worldcereal"])
def test_evaluate_reproduces_the_shipped_held_out_scores(tmp_path, checkpoint):
    """``evaluate --split test`` scores a calibrated checkpoint as it maps, giving its model-card numbers."""
    from cropcore.models import load_checkpoint

    _, meta = load_checkpoint(checkpoint)
    files = [str(data_dir(WC) / p) for p in (WC, "worldcereal/public_extractions_monthly.parquet",
                                             "worldcereal/belgium_2021")]
    out = tmp_path / "report.json"
    assert main(["evaluate", "--checkpoint", checkpoint, "--split", "test", "--data", *files, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == len(meta.test_sample_ids) == 213
    assert report["calibration"] == meta.calibration.to_dict()
    for key in ("oa", "macro_f1"):
        assert report[key] == pytest.approx(meta.metrics["network"][key], abs=1e-6)
