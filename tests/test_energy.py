"""Energy of a block of work with the real codecarbon offline tracker, and in the manifest of a real map run."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
import torch

from cropcore import energy
from cropcore.energy import EnergyMeter, format_energy
from cropcore.pipeline import RunParams, export_run, run

DEMO = (5.3189, 50.6286, 5.3334, 50.6378)
LOCK = Path(tempfile.gettempdir()) / ".codecarbon.lock"


def work(seconds: float = 1.5) -> float:
    """Real CPU work: matrix products for about ``seconds``."""
    a = torch.randn(256, 256)
    end = time.perf_counter() + seconds
    total = 0.0
    while time.perf_counter() < end:
        total += float((a @ a).sum())
    return total


class BrokenTracker:
    """A tracker that sets up and starts but fails when stopped (a fault codecarbon cannot be made to have)."""

    _emissions = object()
    _country_name = "Belgium"

    def __init__(self, **_: object) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        raise OSError("power counters vanished")


def test_a_tracked_block_has_positive_energy_and_says_how(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CROPCORE_ENERGY", raising=False)
    monkeypatch.setenv("CROPCORE_ENERGY_COUNTRY", "FRA")
    with EnergyMeter("work") as meter:
        assert work() != 0
    record = meter.record.per(area_km2=2.0, images=4, image_kind="patch")
    assert record.measured, record.reason
    assert record.kwh > 0 and record.joules == pytest.approx(record.kwh * 3.6e6) and record.watts > 0
    assert record.seconds >= 1.5 and record.co2e_g > 0 and record.country == "FRA"
    assert record.methods["cpu"].startswith(("measured", "estimated")) and record.methods["ram"]
    assert record.methods["gpu"].startswith(("measured", "none"))
    assert record.joules_per_km2 == pytest.approx(record.joules / 2) and record.joules_per_image > 0
    line = format_energy(record)
    assert line.startswith("energy: ") and "J/km²" in line and "J/patch" in line and "g CO2e (FRA)" in line
    manifest = record.manifest()
    assert manifest["measured"] and manifest["methods"] == record.methods and manifest["tool"].startswith("codecarbon")
    assert os.listdir(tmp_path) == [] and not LOCK.exists()  # no emissions.csv, no lock file


def test_switched_off_is_not_measured(monkeypatch):
    monkeypatch.setenv("CROPCORE_ENERGY", "off")
    with EnergyMeter("work") as meter:
        result = work(0.1)
    assert result != 0 and not meter.record.measured
    assert format_energy(meter.record) == "energy: not measured: switched off (CROPCORE_ENERGY=off)"
    assert meter.record.manifest() == {"measured": False, "reason": "switched off (CROPCORE_ENERGY=off)",
                                       "stages": ["work"]}


def test_an_unknown_country_is_not_measured_and_named(monkeypatch):
    monkeypatch.delenv("CROPCORE_ENERGY", raising=False)
    monkeypatch.setenv("CROPCORE_ENERGY_COUNTRY", "XYZ")
    with EnergyMeter("work") as meter:
        work(0.1)
    assert not meter.record.measured and "CROPCORE_ENERGY_COUNTRY=XYZ" in meter.record.reason


def test_a_failing_tracker_leaves_the_work_intact(monkeypatch):
    monkeypatch.delenv("CROPCORE_ENERGY", raising=False)
    _, capture = energy._codecarbon()
    monkeypatch.setattr(energy, "_codecarbon", lambda: (BrokenTracker, capture))
    with EnergyMeter("work") as meter:
        result = work(0.1)
    assert result != 0
    assert not meter.record.measured and meter.record.reason == "OSError: power counters vanished"


def test_blocks_are_not_nested_by_mistake(monkeypatch):
    """Two meters one after the other each get their own record."""
    monkeypatch.delenv("CROPCORE_ENERGY", raising=False)
    with EnergyMeter("a") as first:
        work(0.5)
    with EnergyMeter("b") as second:
        work(0.5)
    both = first.record.plus(second.record)
    assert both.stages == ("a", "b") and both.kwh == pytest.approx(first.record.kwh + second.record.kwh)


def test_the_manifest_of_a_map_run_carries_its_energy(stac_api, tmp_path, monkeypatch):
    monkeypatch.delenv("CROPCORE_ENERGY", raising=False)
    monkeypatch.chdir(tmp_path)
    params = RunParams(aoi=DEMO, start="2020-11-01", end="2021-10-31", catalog=stac_api)
    result = run(params)
    inside = result.manifest()["energy"]
    assert inside["measured"], inside
    assert inside["stages"] == ["search", "load", "preprocess", "infer"] and inside["joules"] > 0
    assert inside["area_km2"] == pytest.approx(params.aoi.area_km2, rel=1e-3) and inside["j_per_km2"] > 0
    paths = export_run(result, tmp_path / "out", name="demo")
    assert json.loads(paths["manifest"].read_text())["energy"]["stages"] == inside["stages"]
    assert result.energy.stages[-1] == "write" and result.energy.joules > inside["joules"]
    assert "J/km²" in format_energy(result.energy)
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_map_run_goes_on_when_the_tracker_fails(stac_api, monkeypatch):
    monkeypatch.delenv("CROPCORE_ENERGY", raising=False)
    _, capture = energy._codecarbon()
    monkeypatch.setattr(energy, "_codecarbon", lambda: (BrokenTracker, capture))
    result = run(RunParams(aoi=DEMO, start="2020-11-01", end="2021-10-31", catalog=stac_api))
    assert result.prediction["class"].size > 0
    assert result.manifest()["energy"] == {"measured": False, "reason": "OSError: power counters vanished",
                                           "stages": ["search", "load", "preprocess", "infer"]}


def _spin(seconds: float) -> int:
    """Keep one core busy in Python for ``seconds``."""
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n


def test_the_cpu_estimate_follows_the_load_of_the_block(monkeypatch):
    """Without power counters the CPU power is TDP x the process's mean load over the block (at least 10 % of the
    TDP): a busy block costs what its CPU time says, relative to an idle one of the same length (codecarbon's own
    reading, taken after the work, saw both idle)."""
    monkeypatch.delenv("CROPCORE_ENERGY", raising=False)
    with EnergyMeter("idle") as idle:
        time.sleep(2)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with EnergyMeter("busy") as busy:
        _spin(2)
    load = (time.process_time() - cpu0) / (time.perf_counter() - wall0) / os.cpu_count()
    if not busy.record.methods["cpu"].startswith("estimated: TDP x mean CPU load"):
        pytest.skip(f"this machine's CPU is not estimated from its load ({busy.record.methods['cpu']})")
    if load < 0.2:
        pytest.skip(f"the busy thread got {load:.0%} of the CPUs: the machine is too busy to tell load from idle")
    per_second = busy.record.cpu_kwh / busy.record.seconds / (idle.record.cpu_kwh / idle.record.seconds)
    assert per_second == pytest.approx(max(load, 0.1) / 0.1, rel=0.3)
