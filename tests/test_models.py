"""AgrUNet and TempCNN: shapes, masks, deep supervision, overfitting, registry and safe checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch

from cropcore.errors import CheckpointError, ShapeError
from cropcore.models import ModelMeta, build_model, list_models, load_checkpoint, predict_cube, save_checkpoint
from cropcore.models.conv import Conv3d, onednn_applies

SMALL = {"in_channels": 4, "num_classes": 3, "widths": (4, 8, 8, 16)}


def test_registry_lists_and_rejects_unknown_names():
    assert {"agrunet", "tempcnn"} <= set(list_models())
    with pytest.raises(KeyError, match="agrunet"):
        build_model("unet9000")


@pytest.mark.parametrize("t", [1, 5, 12])
def test_agrunet_shapes_for_any_t(t):
    model = build_model("agrunet", **SMALL).eval()
    out = model(torch.randn(2, t, 4, 32, 24))
    assert out.shape == (2, 3, 32, 24)


def test_agrunet_padding_mask_gives_the_unpadded_result():
    torch.manual_seed(0)
    model = build_model("agrunet", **SMALL).eval()
    x = torch.randn(1, 7, 4, 16, 16)
    padded = torch.cat([x, torch.randn(1, 5, 4, 16, 16)], dim=1)
    mask = torch.tensor([[True] * 7 + [False] * 5])
    torch.testing.assert_close(model(padded, mask), model(x), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(model(padded), model(x), atol=1e-4)


@pytest.mark.parametrize("batch", [1, 3])
def test_onednn_conv3d_matches_the_default_convolution_with_gradients(batch):
    torch.manual_seed(0)
    ref = torch.nn.Conv3d(5, 7, 3, padding=1)
    conv = Conv3d(5, 7, 3, padding=1)
    conv.load_state_dict(ref.state_dict())
    x = torch.randn(batch, 5, 4, 9, 11, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    assert onednn_applies(x, conv.weight) == torch.backends.mkldnn.is_available()
    torch.testing.assert_close(conv(x), ref(x2), atol=1e-5, rtol=1e-5)
    conv(x).square().sum().backward()
    ref(x2).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, atol=1e-3, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps PyTorch's own path
        assert not onednn_applies(x, conv.weight)
        assert conv(x).dtype == torch.bfloat16
    assert all(type(m) is not torch.nn.Conv3d for m in build_model("agrunet", **SMALL).modules())


def test_agrunet_traces_under_torch_compile():
    """torch.compile traces with fake tensors, which the direct oneDNN call cannot take: the traced graph uses
    the default convolution and gives the eager numbers."""
    torch.manual_seed(0)
    model = build_model("agrunet", **SMALL).eval()
    x = torch.randn(1, 6, 4, 16, 16)
    with torch.inference_mode():
        eager = model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=False)(x)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)


def test_deep_supervision_outputs_in_training_and_off_at_inference():
    model = build_model("agrunet", **SMALL)
    logits, aux = model.train()(torch.randn(2, 6, 4, 16, 16))
    assert len(aux) == 2 and all(a.shape == logits.shape == (2, 3, 16, 16) for a in aux)
    assert isinstance(model.eval()(torch.randn(1, 6, 4, 16, 16)), torch.Tensor)
    assert len(model(torch.randn(1, 6, 4, 16, 16), return_aux=True)[1]) == 2


def test_shape_errors_suggest_the_padded_size():
    model = build_model("agrunet", **SMALL)
    with pytest.raises(ShapeError, match="104x104"):
        model(torch.randn(1, 3, 4, 100, 100))
    with pytest.raises(ShapeError, match="4 bands"):
        model(torch.randn(1, 3, 5, 16, 16))
    with pytest.raises(ShapeError, match="mask"):
        model(torch.randn(1, 3, 4, 16, 16), torch.ones(1, 4, dtype=torch.bool))


def _overfit(model, x, mask, y, steps):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        out = model(x, mask)
        logits = out[0] if isinstance(out, tuple) else out
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return (model(x, mask).argmax(1) == y).float().mean().item()


def test_agrunet_overfits_a_tiny_batch():
    torch.manual_seed(0)
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    y[:, :8] = 1
    y[:, :, 12:] = 2
    x = torch.randn(2, 4, 4, 16, 16) * 0.1 + torch.nn.functional.one_hot(y, 4).permute(0, 3, 1, 2)[:, None]
    assert _overfit(build_model("agrunet", **SMALL), x, None, y, 60) > 0.95


def test_tempcnn_overfits_and_masks():
    torch.manual_seed(0)
    x, y = torch.randn(16, 12, 9), torch.arange(16) % 4
    mask = torch.rand(16, 12) > 0.2
    model = build_model("tempcnn", in_channels=9, num_classes=4, seq_len=12, dropout=0.0)
    assert _overfit(model, x, mask, y, 60) == 1.0
    changed = x.clone()
    changed[~mask] = 99.0  # masked steps must not matter
    torch.testing.assert_close(model(changed, mask), model(x, mask))
    with pytest.raises(ShapeError, match="12-step"):
        model(torch.randn(2, 10, 9))


def test_predict_cube_applies_the_pixel_model_everywhere():
    model = build_model("tempcnn", in_channels=3, num_classes=5, seq_len=6).eval()
    cube = torch.randn(6, 3, 7, 9)
    probs = predict_cube(model, cube, batch_size=10)
    assert probs.shape == (5, 7, 9)
    torch.testing.assert_close(probs.sum(0), torch.ones(7, 9))
    pixel = torch.softmax(model(cube[:, :, 2, 3][None]), 1)[0]
    torch.testing.assert_close(probs[:, 2, 3], pixel)


def _meta(bands=3, k=2):
    return ModelMeta.from_dict({
        "model": "tempcnn",
        "model_kwargs": {"in_channels": bands, "num_classes": k, "seq_len": 4},
        "bands": [f"B{i}" for i in range(bands)],
        "time_axis": {"kind": "dates", "steps": ["a", "b", "c", "d"]},
        "norm": {"mean": [0.0] * bands, "std": [1.0] * bands},
        "legend": [{"id": i, "name": f"c{i}", "color": "#000000"} for i in range(k)],
    }, kind="pixel")


def test_checkpoint_round_trip_and_validation(tmp_path):
    model = build_model("tempcnn", in_channels=3, num_classes=2, seq_len=4).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, _meta())
    loaded, meta = load_checkpoint(path, bands=["B0", "B1", "B2"])
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(loaded(x), model(x))
    assert meta.legend[1].name == "c1"
    with pytest.raises(CheckpointError, match="expects bands"):
        load_checkpoint(path, bands=["B0", "B1"])
    with pytest.raises(CheckpointError, match="one of"):
        load_checkpoint(tmp_path / "missing.pt")


def test_pickled_objects_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "cropcore-checkpoint/1", "x": Payload()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(path)


def test_shipped_default_checkpoint_loads():
    model, meta = load_checkpoint("tempcnn_worldcereal")
    assert meta.bands == ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
    assert len(meta.time_axis.steps) == 12
    assert model(torch.zeros(1, 12, 9), torch.ones(1, 12, dtype=torch.bool)).shape == (1, meta.num_classes)
