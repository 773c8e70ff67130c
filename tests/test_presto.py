"""Presto as a registered pixel model, with the real pretrained weights from the models folder."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cropcore.data.points import PointDataset, PointSeries, concat
from cropcore.errors import CheckpointError
from cropcore.models import (
    PrestoClassifier,
    TempCNN,
    build_model,
    load_checkpoint,
    model_kind,
    save_checkpoint,
    uses_location,
)
from cropcore.models.registry import untrained_meta
from cropcore.settings import PROJECT_ROOT, models_dir
from cropcore.training import load_config, predict_series, run

BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]
SEASON = [11, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
KW = {"in_channels": 9, "num_classes": 6, "bands": BANDS, "months": SEASON}
WEIGHTS = ["presto_default_model.pt", "worldcereal_presto_croptype_monthly.pt"]


def inputs(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, 9, generator=g)
    mask = torch.rand(n, 12, generator=g) > 0.3
    latlon = torch.tensor([[43.3, -0.46], [4.79, 33.5], [50.6, 5.3], [-20.0, 140.0]])[:n]
    return x, mask, latlon


def pretrained(name: str = WEIGHTS[0], **kwargs: object) -> PrestoClassifier:
    model = PrestoClassifier(**{**KW, **kwargs})
    model.load_pretrained(models_dir(name) / name)
    return model.eval()


@pytest.mark.parametrize("name", WEIGHTS)
def test_both_weight_files_load_every_encoder_weight(name):
    state = torch.load(models_dir(name) / name, map_location="cpu", weights_only=True)
    model = pretrained(name)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, state[f"encoder.{key}"]), key
    assert model(*inputs()[:2], latlon=inputs()[2]).shape == (4, 6)


def test_fixed_encodings_are_presto_tables():
    state = torch.load(models_dir(WEIGHTS[0]) / WEIGHTS[0], map_location="cpu", weights_only=True)
    fresh = PrestoClassifier(**KW).encoder.state_dict()
    for key in ("pos_embed", "month_embed.weight"):
        torch.testing.assert_close(fresh[key], state[f"encoder.{key}"])


def test_foreign_weights_are_refused(tmp_path):
    path = tmp_path / "other.pt"
    state = pretrained().encoder.state_dict()
    state["extra.weight"] = state.pop("norm.weight")
    torch.save({f"encoder.{k}": v for k, v in state.items()}, path)
    with pytest.raises(CheckpointError, match=r"missing \['norm.weight'\], unexpected \['extra.weight'\]"):
        PrestoClassifier(**KW).load_pretrained(path)


def test_registered_as_a_pixel_model_using_location():
    assert model_kind("presto") == "pixel" and uses_location("presto") and not uses_location("tempcnn")
    assert isinstance(build_model("presto", **KW), PrestoClassifier)


def test_masked_dates_do_not_matter_and_location_is_required():
    model = pretrained()
    x, mask, latlon = inputs()
    out = model(x, mask, latlon=latlon)
    changed = torch.where(mask[..., None], x, torch.randn_like(x) * 10)
    torch.testing.assert_close(model(changed, mask, latlon=latlon), out)
    assert not torch.allclose(model(x, mask, latlon=latlon.flip(0)), out)
    nothing = torch.zeros_like(mask)  # no observed date: the location token alone, still finite
    assert torch.isfinite(model(x, nothing, latlon=latlon)).all()
    with pytest.raises(ValueError, match="latlon"):
        model(x, mask)


def test_months_and_input_norm_change_the_output():
    x, mask, latlon = inputs()
    base = pretrained()(x, mask, latlon=latlon)
    shifted = pretrained(months=[*SEASON[6:], *SEASON[:6]])(x, mask, latlon=latlon)
    assert not torch.allclose(base, shifted, atol=1e-4)
    model = pretrained()
    model.set_input_norm([0.1] * 9, [0.05] * 9)
    assert not torch.allclose(model(x, mask, latlon=latlon), base, atol=1e-4)


def test_input_norm_survives_a_checkpoint_without_the_pretrained_file(tmp_path):
    model = pretrained()
    mean, std = np.linspace(0.05, 0.3, 9).tolist(), np.linspace(0.02, 0.1, 9).tolist()
    model.set_input_norm(mean, std)
    meta = replace(untrained_meta("presto", bands=BANDS, classes=6, months=SEASON), model_kwargs=KW)
    loaded, meta = load_checkpoint(save_checkpoint(tmp_path / "presto.pt", model, meta))
    torch.testing.assert_close(loaded.input_mean, torch.tensor(mean))
    torch.testing.assert_close(loaded.input_std, torch.tensor(std))
    x, mask, latlon = inputs()
    torch.testing.assert_close(loaded(x, mask, latlon=latlon), model(x, mask, latlon=latlon))
    probs = predict_series(loaded, x.numpy(), mask.numpy(), latlon=latlon.numpy().astype(np.float64))
    torch.testing.assert_close(probs, torch.softmax(model(x, mask, latlon=latlon), dim=1))


def test_reset_head_keeps_the_encoder():
    model = pretrained()
    encoder = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    model.reset_head(3)
    x, mask, latlon = inputs()
    assert model(x, mask, latlon=latlon).shape == (4, 3) and model.num_classes == 3
    assert all(torch.equal(v, encoder[k]) for k, v in model.encoder.state_dict().items())
    tempcnn = TempCNN(9, 6, seq_len=12).eval()
    tempcnn.reset_head(4)
    assert tempcnn(x, mask).shape == (4, 4) and tempcnn.num_classes == 4


def test_point_series_carry_latlon():
    def series(n: int, latlon: bool) -> PointSeries:
        return PointSeries(np.ones((n, 12, 9), np.float32), np.zeros(n, np.int64), np.arange(n).astype(str),
                           tuple(BANDS), tuple(map(str, SEASON)), ("a",),
                           np.tile([[50.0, 5.0]], (n, 1)) if latlon else None)

    both = concat([series(2, True), series(3, True)])
    assert both.latlon.shape == (5, 2) and both.subset(np.array([0, 4])).latlon.shape == (2, 2)
    assert concat([series(2, True), series(1, False)]).latlon is None
    assert len(PointDataset(both, [0.0] * 9, [1.0] * 9)[0]) == 4
    assert len(PointDataset(series(2, False), [0.0] * 9, [1.0] * 9)[0]) == 3


@pytest.mark.parametrize("config", ["presto_worldcereal", "presto_wc_worldcereal"])
def test_fast_dev_run_from_pretrained_weights(config):
    cfg = load_config(PROJECT_ROOT / "configs" / f"{config}.yaml")
    cfg = replace(cfg, name=f"test_{config}", output=None, data={**cfg.data, "batch_size": 8})
    assert run(cfg, fast_dev_run=True, devices=1) == {}
