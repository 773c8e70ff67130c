"""PASTIS-format dataset on a tiny fixture generated (seeded) in that exact layout at test time."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cropcore.data.pastis import PastisDataset, collate_patches, fold_split, read_metadata
from cropcore.errors import DatasetFormatError
from cropcore.models import build_model, load_checkpoint
from cropcore.training import TrainConfig, run

N_DATES = {10000: 5, 10001: 7, 10002: 3, 10003: 6, 10004: 4}  # patch id -> T (PASTIS: 38-61)


def make_pastis(root: Path, *, size: int = 16, bands: int = 10, seed: int = 0) -> Path:
    """Write a PASTIS-layout folder: metadata.geojson, DATA_S2/S2_<id>.npy, ANNOTATIONS/TARGET_<id>.npy."""
    rng = np.random.default_rng(seed)
    (root / "DATA_S2").mkdir(parents=True)
    (root / "ANNOTATIONS").mkdir()
    features = []
    for fold, (pid, t) in enumerate(N_DATES.items(), start=1):
        days = np.sort(rng.choice(365, t, replace=False))
        dates = {str(i): int((date(2018, 9, 1) + timedelta(int(d))).strftime("%Y%m%d")) for i, d in enumerate(days)}
        np.save(root / "DATA_S2" / f"S2_{pid}.npy", rng.integers(0, 8000, (t, bands, size, size)).astype(np.int16))
        target = rng.integers(0, 20, (3, size, size)).astype(np.uint8)  # semantic, instance-like, void
        np.save(root / "ANNOTATIONS" / f"TARGET_{pid}.npy", target)
        geometry = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
        props = {"ID_PATCH": pid, "Fold": fold, "N_Parcel": 3, "Parcel_Cover": 0.5, "TILE": "t30uxv",
                 "dates-S2": dates}
        features.append({"type": "Feature", "id": str(pid), "geometry": geometry, "properties": props})
    (root / "metadata.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return root


@pytest.fixture()
def pastis(tmp_path: Path) -> Path:
    return make_pastis(tmp_path / "PASTIS")


def test_metadata_and_fold_split(pastis):
    meta = read_metadata(pastis)
    assert [p["id"] for p in meta] == list(N_DATES) and [len(p["dates"]) for p in meta] == list(N_DATES.values())
    assert fold_split(1) == ([3, 4, 5], [2], [1]) and fold_split(5) == ([2, 3, 4], [1], [5])
    with pytest.raises(DatasetFormatError):
        fold_split(6)


def test_items_are_normalised_with_void_ignored(pastis):
    train = PastisDataset(pastis, folds=[1, 2, 3])
    x, mask, y = train[1]
    raw = np.load(pastis / "DATA_S2/S2_10001.npy")
    target = np.load(pastis / "ANNOTATIONS/TARGET_10001.npy")[0]
    assert x.shape == (7, 10, 16, 16) and mask.all() and y.dtype == torch.int64
    np.testing.assert_allclose(x.numpy(), (raw - train.mean[:, None, None]) / train.std[:, None, None], rtol=1e-5)
    assert ((y == -1) == torch.from_numpy(target == 19)).all()
    assert train.dates(1)[0] >= 0 and (train.dates(1).diff() > 0).all()
    test = PastisDataset(pastis, folds=[5], mean=train.mean, std=train.std)
    assert len(test) == 1 and np.array_equal(test.mean, train.mean)


def test_variable_t_is_padded_masked_and_fits_agrunet(pastis):
    loader = DataLoader(PastisDataset(pastis), batch_size=3, collate_fn=collate_patches)
    x, mask, y = next(iter(loader))
    assert x.shape == (3, 7, 10, 16, 16) and y.shape == (3, 16, 16)
    assert mask.sum(1).tolist() == [5, 7, 3] and (x[2, 3:] == 0).all()
    model = build_model("agrunet", in_channels=10, num_classes=20, widths=(4, 8, 16)).eval()
    with torch.no_grad():
        padded = model(x, mask)
        alone = model(x[2:3, :3])
    torch.testing.assert_close(padded[2:3], alone, atol=1e-4, rtol=1e-4)


def test_bad_layouts_say_what_is_wrong(tmp_path, pastis):
    with pytest.raises(DatasetFormatError, match=r"metadata\.geojson"):
        PastisDataset(tmp_path)
    (pastis / "DATA_S2/S2_10002.npy").unlink()
    with pytest.raises(DatasetFormatError, match="S2_10002"):
        PastisDataset(pastis, mean=[0] * 10, std=[1] * 10)[2]


def test_train_one_epoch_on_a_pastis_fold_and_reload_the_checkpoint(pastis, tmp_path):
    out = tmp_path / "agrunet_pastis.pt"
    config = TrainConfig(name="test_pastis", model="agrunet",
                         model_kwargs={"in_channels": 10, "num_classes": 19, "widths": [4, 8, 8]},
                         data={"kind": "pastis", "root": str(pastis), "test_fold": 2, "batch_size": 2},
                         trainer={"max_epochs": 1, "accelerator": "cpu"}, output=str(out))
    results = run(config, devices=1)
    assert results["sizes"] == {"train": 3, "val": 1, "test": 1}
    assert results["network_patches"]["n"] == int((np.load(pastis / "ANNOTATIONS/TARGET_10001.npy")[0] != 19).sum())
    model, meta = load_checkpoint(out)
    assert model.num_classes == meta.num_classes == 19 and meta.bands[7] == "B8A" and meta.test_fold == 2
    assert max(meta.norm.mean) < 1  # reflectance, like the other checkpoints
