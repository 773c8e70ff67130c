"""Typed checkpoint metadata and the registry: shipped files load unchanged and re-save to the same JSON."""

import json
from dataclasses import replace

import pytest
import torch

from cropcore.errors import CheckpointError
from cropcore.models import ModelMeta, build_model, list_models, load_checkpoint, model_kind, save_checkpoint
from cropcore.models.checkpoint import CHECKPOINT_DIR
from cropcore.models.registry import untrained_meta

SHIPPED = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))


def stored_json(name: str) -> dict:
    return json.loads(torch.load(CHECKPOINT_DIR / f"{name}.pt", weights_only=True)["meta"])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoints_load_and_round_trip(name):
    model, meta = load_checkpoint(name)
    assert isinstance(meta, ModelMeta) and meta.name == name and len(meta.sha256) == 64
    assert meta.to_dict() == stored_json(name)  # nothing lost or added, written before ModelMeta existed
    assert list(meta.to_dict()) == list(stored_json(name))  # same key order: re-saving gives the same JSON
    assert meta.kind == model_kind(meta.architecture) and meta.is_pixel == (meta.architecture != "agrunet")
    assert meta.num_classes == len(meta.class_names) == len(meta.colors) == model.num_classes


def test_kinds_come_from_the_registry():
    assert list_models() == ["agrunet", "presto", "tempcnn"]
    assert model_kind("tempcnn") == "pixel" and model_kind("AgrUNet") == "patch"
    with pytest.raises(KeyError, match="valid names: agrunet, presto, tempcnn"):
        model_kind("resnet")


def test_crop_ids_and_legend(tmp_path):
    _, meta = load_checkpoint("tempcnn_worldcereal")
    assert meta.crop_ids == [c.id for c in meta.legend if c.is_crop] and 0 not in meta.crop_ids
    assert meta.time_axis.kind == "season_months" and meta.time_axis.steps[0] == "M11"


def test_save_and_load_keep_every_field(tmp_path):
    meta = untrained_meta("agrunet", bands=4, classes=3, widths=[8, 16, 32])
    model = build_model("agrunet", **meta.model_kwargs)
    meta = replace(meta, patch_size=32, test_sample_ids=("a", "b"), metrics={"network": {"oa": 0.5}},
                   extra={"note": "kept"})
    _, loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, meta))
    assert replace(loaded, sha256=None) == meta


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("legend"), "lacks"),
        (lambda d: d.update(legend=[{"id": 1, "name": "a", "color": "#000000"}]), "predicts 2 classes"),
        (lambda d: d.update(model="resnet"), "unknown model"),
        (lambda d: d["norm"].update(mean=[0.0]), "one value per band"),
        (lambda d: d.update(legend="nonsense"), "malformed"),
    ],
)
def test_bad_metadata_is_refused(tmp_path, change, message):
    meta = untrained_meta("tempcnn", bands=2, classes=2, seq_len=4)
    raw = meta.to_dict()
    change(raw)
    path = tmp_path / "bad.pt"
    model = build_model("tempcnn", **meta.model_kwargs)
    torch.save({"format": "cropcore-checkpoint/1", "state_dict": model.state_dict(), "meta": json.dumps(raw)}, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
