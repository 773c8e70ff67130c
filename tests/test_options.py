"""Inference options (defaults written once), progress spans and settings from the environment."""

import pytest

from cropcore import settings
from cropcore.errors import ConfigError
from cropcore.inference.options import CHUNK_ROWS, InferenceOptions, cube_chunks
from cropcore.progress import span


def test_defaults_and_chunks():
    options = InferenceOptions()
    assert (options.tile, options.overlap, options.strip, options.batch_size) == (64, 16, 512, 4)
    assert cube_chunks(options) == {"y": CHUNK_ROWS, "x": 512}  # chunks as wide as the strips
    assert cube_chunks(InferenceOptions(strip=None)) == {"y": CHUNK_ROWS, "x": -1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"tile": 16, "overlap": 16}, "tile > overlap"), ({"batch_size": 0}, "batch_size"),
     ({"tile": 64, "strip": 32}, "at least the tile size"), ({"min_confidence": 1.2}, "between 0 and 1"),
     ({"min_confidence": -0.1}, "between 0 and 1"), ({"min_confidence": float("nan")}, "between 0 and 1")],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        InferenceOptions(**kwargs)


def test_predict_cli_defaults_are_the_options_defaults():
    import argparse

    from cropcore.commands.predict import register

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    args = sub.choices["predict"].parse_args(
        ["--bbox", "0", "0", "1", "1", "--start", "2021-01-01", "--end", "2021-02-01", "--out", "m.tif"])
    defaults = InferenceOptions()
    assert (args.tile, args.overlap, args.strip, args.batch_size, args.devices, args.min_confidence) == (
        defaults.tile, defaults.overlap, defaults.strip, defaults.batch_size, defaults.devices, None)
    assert defaults.min_confidence is None  # None: the checkpoint's calibration


def test_a_span_maps_a_step_onto_its_share():
    seen = []
    report = span(lambda f, m: seen.append((f, m)), 0.2, 0.6, "step: ")
    report(0.0, "a")
    report(0.5, "b")
    report(1.0, "c")
    assert seen == [(0.2, "step: a"), (0.4, "step: b"), (0.6, "step: c")]
    span(None, 0, 1)(0.5, "nobody listens")  # no callback: nothing happens


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("CROPCORE_STAC_PORT", "9000")
    monkeypatch.delenv("CROPCORE_PG_PORT", raising=False)
    assert settings.pg_port() == 10000
    monkeypatch.setenv("CROPCORE_DEVICES", " cpu:2 ")
    assert settings.devices() == "cpu:2"
    monkeypatch.setenv("CROPCORE_PG_PORT", "nope")
    with pytest.raises(ConfigError, match="CROPCORE_PG_PORT"):
        settings.pg_port()
