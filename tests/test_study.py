"""Leave-one-region-out data, class-balanced sampling, index inputs and the generalisation study on real data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cropcore.errors import ConfigError
from cropcore.training import PointDataModule
from cropcore.training.config import load_config
from cropcore.training.study import Study, load_study, only, plan, run_study, split_config
from cropcore.training.study_tables import tables, write_into

REGIONS = {"France": ["worldcereal/2023_FRA_LPIS_POLY_110_dekad.geoparquet"],
           "Africa": ["worldcereal/public_extractions_monthly.parquet"],
           "Belgium": ["worldcereal/belgium_2021"]}


def test_holding_out_a_region_tests_on_all_of_it_and_trains_on_none_of_it():
    dm = PointDataModule("worldcereal", regions=REGIONS, holdout="Belgium")
    assert set(dm.test_region) == {"Belgium"} and len(dm.test) == 111  # every labelled Belgian point
    assert "Belgium" not in set(dm.train_region)
    assert not set(dm.test.sample_id) & (set(dm.train.sample_id) | set(dm.val.sample_id))
    by_sample = PointDataModule("worldcereal", regions=REGIONS, seed=1)
    assert set(by_sample.test_region) == {"France", "Africa", "Belgium"}
    with pytest.raises(ConfigError, match="holdout region 'Spain'"):
        PointDataModule("worldcereal", regions=REGIONS, holdout="Spain")


def test_balanced_sampling_and_index_inputs():
    dm = PointDataModule("worldcereal", regions=REGIONS, balanced=True, batch_size=32, indices=["NDVI"])
    assert dm.train.bands[-1] == "NDVI" and dm.train.x.shape[-1] == 10
    b04, b08 = dm.train.x[..., dm.train.bands.index("B04")], dm.train.x[..., dm.train.bands.index("B08")]
    np.testing.assert_allclose(dm.train.x[..., -1], (b08 - b04) / (b08 + b04), rtol=1e-5)
    labels = np.concatenate([batch[2].numpy() for batch in dm.train_dataloader()])
    share = np.bincount(labels, minlength=6) / len(labels)
    natural = np.bincount(dm.train.y, minlength=6) / len(dm.train.y)
    assert share.max() - share.min() < natural.max() - natural.min()  # drawn closer to uniform than the data


def test_the_study_config_plans_every_split_and_variant():
    study = load_study("configs/study_generalisation.yaml")
    runs = plan(study)
    n_holdout = len(study.holdouts) * len(study.holdout_seeds)
    entries = [e if isinstance(e, dict) else {} for e in study.models.values()]
    n_regions = len(study.holdouts)
    per_model = [len(e.get("seeds", study.seeds)) + n_regions * len(e.get("holdout_seeds", study.holdout_seeds))
                 for e in entries]
    assert len(runs) == sum(per_model) + n_holdout * len(study.variants or {})
    assert all(config.output is None for _, _, config in runs)  # a study never overwrites a shipped checkpoint
    shifted = [c for label, _, c in runs if "season shift" in label]
    assert shifted and all(c.augment["shift"] == 1 and c.data["holdout"] for c in shifted)
    presto = plan(only(study, ["Presto"]))
    assert {label for label, _, _ in presto} == {"Presto"} and len(presto) == len(study.seeds) + n_holdout
    with pytest.raises(ConfigError, match="no model"):
        only(study, ["ResNet"])
    one_seed = replace(study, models={"slow": {"config": "configs/tempcnn_worldcereal.yaml", "holdout_seeds": [0]}},
                       variants=None, variant_base=None)
    assert [split for _, split, _ in plan(one_seed)] == [
        "sample seed 0", "sample seed 1", "sample seed 2", "holdout France seed 0", "holdout Africa seed 0",
        "holdout Belgium seed 0"]
    fewer = replace(one_seed, models={"slow": {"config": "configs/tempcnn_worldcereal.yaml", "seeds": [1],
                                               "holdout_seeds": [2]}})
    assert [split for _, split, _ in plan(fewer)] == [
        "sample seed 1", "holdout France seed 2", "holdout Africa seed 2", "holdout Belgium seed 2"]
    with pytest.raises(ConfigError, match="a model entry"):
        plan(replace(one_seed, models={"slow": {"config": "configs/tempcnn_worldcereal.yaml", "epochs": 3}}))


@pytest.mark.slow
def test_a_small_study_trains_resumes_and_writes_the_card_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("CROPCORE_HOME", str(tmp_path / "home"))
    study = Study(name="tiny", models={"TempCNN": "configs/tempcnn_worldcereal.yaml"}, seeds=(0,),
                  holdouts=("Belgium",), variant_base="TempCNN", variants={"+ shift": {"augment": {"shift": 1}}},
                  epochs=1)
    records = run_study(study, report=lambda _: None)
    assert [(r["model"], r["split"]) for r in records] == [
        ("TempCNN", "sample seed 0"), ("TempCNN", "holdout Belgium seed 0"),
        ("TempCNN + shift", "holdout Belgium seed 0")]
    belgium = records[1]["results"]
    assert belgium["test_regions"] == {"Belgium": 111} and belgium["network"]["n"] == 111
    for model in ("network", "random_forest"):
        m = belgium[model]
        assert {"oa", "macro_f1", "crop_balanced_accuracy", "noncrop_recall", "ece", "per_class"} <= set(m)
        assert 0 <= m["calibration"]["min_confidence"] <= 1 and m["calibration"]["temperature"] > 0

    def no_training(config):
        raise AssertionError("a finished run was trained again")

    assert run_study(study, report=lambda _: None, runner=no_training) == records
    text = tables(records, variant_base="TempCNN")
    assert "| TempCNN + shift |" in text and "| RandomForest |" in text and "test Belgium" in text
    card = tmp_path / "card.md"
    card.write_text("# card\n\nbefore\n")
    write_into(card, "tiny", text)
    write_into(card, "tiny", "replaced")
    body = card.read_text()
    assert body.count("study:tiny:start") == 1 and "replaced" in body and "| TempCNN + shift |" not in body
    assert body.startswith("# card\n\nbefore\n")


def test_split_config_never_writes_a_checkpoint():
    config = load_config("configs/tempcnn_worldcereal.yaml")
    assert config.output is not None
    one = split_config(config, holdout="Africa", overrides={"augment": {"shift": 1}}, epochs=3)
    assert one.output is None and one.data["holdout"] == "Africa" and one.trainer["max_epochs"] == 3
    assert one.augment == {**config.augment, "shift": 1} and replace(one, output="x").output == "x"
