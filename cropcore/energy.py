"""Energy of a block of work, measured with CodeCarbon's offline tracker, as a typed record and one line of text.

``with EnergyMeter("infer") as meter: ...`` tracks the block; ``meter.record`` is then an :class:`EnergyRecord`:
kWh and joules (CPU, GPU, RAM), average power, g CO2e at the configured country's grid intensity, and *how*
each part was obtained: hardware counters where codecarbon finds them (RAPL on CPUs, NVML on NVIDIA GPUs),
otherwise its estimate (CPU: TDP x this process's CPU load; RAM: a model of the installed memory). Tracking
never breaks or stops the work: when it is switched off or codecarbon fails, the record says "not measured"
and why. codecarbon writes nothing (no ``emissions.csv``, no lock file) and logs nothing to the console; its
warnings become the record's notes. See ``docs/ENERGY.md``.

``CROPCORE_ENERGY=off`` switches tracking off; ``CROPCORE_ENERGY_COUNTRY`` (ISO 3166-1 alpha-3, default
``BEL``) chooses the grid's carbon intensity.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import threading
import warnings
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any

from cropcore import settings

_JOULES_PER_KWH = 3.6e6
_CPU_METHODS = {
    "intel_rapl": "measured: RAPL energy counters (whole CPU package)",
    "intel_power_gadget": "measured: Intel Power Gadget",
    "cpu_load": "estimated: TDP x mean CPU load of this process (no power counters)",
    "constant": "estimated: constant share of the TDP (no power counters)",
}


@dataclass(frozen=True)
class EnergyRecord:
    """Energy of one tracked block. ``measured`` False: nothing else is meaningful and ``reason`` says why."""

    measured: bool
    reason: str = ""
    stages: tuple[str, ...] = ()
    seconds: float = 0.0
    cpu_kwh: float = 0.0
    gpu_kwh: float = 0.0
    ram_kwh: float = 0.0
    co2e_g: float = 0.0
    country: str = ""
    methods: dict[str, str] = field(default_factory=dict)  # cpu, gpu, ram -> how it was obtained
    notes: tuple[str, ...] = ()
    area_km2: float | None = None
    images: int | None = None  # 128 x 128 patches (benchmarks) or maps
    image_kind: str = "image"

    @property
    def kwh(self) -> float:
        return self.cpu_kwh + self.gpu_kwh + self.ram_kwh

    @property
    def joules(self) -> float:
        return self.kwh * _JOULES_PER_KWH

    @property
    def watts(self) -> float:
        """Average power over the tracked time."""
        return self.joules / self.seconds if self.seconds > 0 else 0.0

    @property
    def joules_per_km2(self) -> float | None:
        return self.joules / self.area_km2 if self.measured and self.area_km2 else None

    @property
    def joules_per_image(self) -> float | None:
        return self.joules / self.images if self.measured and self.images else None

    def per(self, *, area_km2: float | None = None, images: int | None = None, image_kind: str = "image",
            ) -> EnergyRecord:
        """This record with the work it did: the area mapped and/or the images (patches, maps) processed."""
        return replace(self, area_km2=area_km2, images=images, image_kind=image_kind)

    def plus(self, other: EnergyRecord) -> EnergyRecord:
        """Both blocks together (one after the other); not measured when either is not."""
        if not (self.measured and other.measured):
            return self if not self.measured else other
        methods = {k: v if other.methods.get(k, v) == v else f"{v}; {other.methods[k]}"
                   for k, v in self.methods.items()}
        return replace(self, stages=self.stages + other.stages, seconds=self.seconds + other.seconds,
                       cpu_kwh=self.cpu_kwh + other.cpu_kwh, gpu_kwh=self.gpu_kwh + other.gpu_kwh,
                       ram_kwh=self.ram_kwh + other.ram_kwh, co2e_g=self.co2e_g + other.co2e_g, methods=methods,
                       notes=tuple(dict.fromkeys(self.notes + other.notes)))

    def manifest(self) -> dict[str, Any]:
        """The record as the run manifest stores it (JSON-ready)."""
        if not self.measured:
            return {"measured": False, "reason": self.reason, "stages": list(self.stages)}
        out: dict[str, Any] = {
            "measured": True, "stages": list(self.stages), "seconds": round(self.seconds, 3),
            "kwh": self.kwh, "joules": round(self.joules, 3), "average_w": round(self.watts, 3),
            "cpu_kwh": self.cpu_kwh, "gpu_kwh": self.gpu_kwh, "ram_kwh": self.ram_kwh,
            "co2e_g": self.co2e_g, "country": self.country, "methods": dict(self.methods),
            "notes": list(self.notes), "tool": f"codecarbon {_codecarbon_version()} (offline)",
        }
        if self.area_km2:
            out |= {"area_km2": round(self.area_km2, 4), "j_per_km2": round(self.joules / self.area_km2, 3)}
        if self.images:
            out |= {"images": self.images, "image_kind": self.image_kind,
                    "j_per_image": round(self.joules / self.images, 4)}
        return out


def not_measured(reason: str, stages: tuple[str, ...] = ()) -> EnergyRecord:
    """A record saying why the energy was not measured."""
    return EnergyRecord(measured=False, reason=reason, stages=stages)


def format_energy(record: EnergyRecord) -> str:
    """One line for people, e.g. ``energy: 0.42 Wh (1.5 kJ, CPU estimated from TDP — no counters), 12 J/km², ...``."""
    if not record.measured:
        return f"energy: not measured: {record.reason}"
    parts = [f"energy: {record.kwh * 1000:.3g} Wh ({_joules(record.joules)}, {_how(record)})"]
    if record.joules_per_km2 is not None:
        parts.append(f"{_joules(record.joules_per_km2)}/km²")
    if record.joules_per_image is not None:
        parts.append(f"{_joules(record.joules_per_image)}/{record.image_kind}")
    parts.append(f"{record.co2e_g:.2g} g CO2e ({record.country})")
    return ", ".join(parts)


def _joules(value: float) -> str:
    return f"{value / 1000:.3g} kJ" if value >= 1000 else f"{value:.3g} J"


def _how(record: EnergyRecord) -> str:
    """Short: which parts were measured by counters and which estimated."""
    cpu = record.methods.get("cpu", "")
    gpu = record.methods.get("gpu", "")
    text = "CPU measured (RAPL)" if cpu.startswith("measured") else "CPU estimated from TDP — no counters"
    if gpu.startswith("measured"):
        text += ", GPU measured (NVML)"
    return text


class _Capture(logging.Filter):
    """Drops every codecarbon message; its warnings in a thread go to the lists of the meters open there."""

    def __init__(self) -> None:
        super().__init__()
        self.sinks: dict[int, list[list[str]]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and record.thread in self.sinks:
            text = " ".join(record.getMessage().split())
            if record.exc_info and record.exc_info[1] is not None:
                text = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            for sink in self.sinks[record.thread]:
                sink.append(text)
        return False

    def open(self, sink: list[str]) -> None:
        """Collect this thread's warnings into ``sink`` (until :meth:`close`)."""
        self.sinks.setdefault(threading.get_ident(), []).append(sink)

    def close(self, sink: list[str]) -> None:
        sinks = self.sinks.get(threading.get_ident(), [])
        if sink in sinks:
            sinks.remove(sink)
        if not sinks:
            self.sinks.pop(threading.get_ident(), None)


@functools.cache
def _codecarbon() -> tuple[Any, _Capture]:
    """Import codecarbon once, silenced: its logger keeps nothing but our capture; CPU-model detection is cached.

    codecarbon 3.0 asks py-cpuinfo for the CPU model in every new tracker (a subprocess of about a second);
    the model does not change while this process lives, so it is asked once.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynvml's deprecation FutureWarning on import
        from codecarbon import OfflineEmissionsTracker
        from codecarbon.core import cpu
    capture = _Capture()
    logger = logging.getLogger("codecarbon")
    logger.addFilter(capture)  # trackers replace the logger's handlers, never its filters
    logger.propagate = False
    cpu.detect_cpu_model = functools.cache(cpu.detect_cpu_model)
    return OfflineEmissionsTracker, capture


def _codecarbon_version() -> str:
    try:
        return version("codecarbon")
    except PackageNotFoundError:
        return "not installed"


def _mean_load_power(hw: Any) -> Any:
    """codecarbon's CPU power for ``hw`` at this process's mean CPU load since the previous reading.

    codecarbon's own reading samples the load over the *next* 0.5 s: at ``stop()``, after the work, it sees an
    idle process, so a block shorter than its measuring interval was costed as idle (3 s of one busy core and
    3 s of sleep gave 3.3 J and 2.4 J). The mean since the previous reading is the load the energy was spent at,
    and it takes no time to read.
    """
    from codecarbon.core.units import Power

    load = hw._process.cpu_percent(interval=None) / hw._cpu_count
    return Power.from_watts(hw._calculate_power_from_cpu_load(hw._tdp, load, hw._model))


def _read_mean_load(tracker: Any) -> None:
    """Make the tracker's load-based CPU estimate use the mean load between readings (:func:`_mean_load_power`)."""
    for hw in getattr(tracker, "_hardware", []):
        if type(hw).__name__ == "CPU" and getattr(hw, "_mode", "") == "cpu_load":
            hw._process.cpu_percent(interval=None)  # the first reading starts here
            hw._get_power_from_cpu_load = functools.partial(_mean_load_power, hw)


def _methods(tracker: Any) -> dict[str, str]:
    """How codecarbon obtains each part on this machine, read from the hardware it set up."""
    methods = {"cpu": "not tracked", "gpu": "none (no NVIDIA GPU found)", "ram": "not tracked"}
    for hw in getattr(tracker, "_hardware", []):
        kind = type(hw).__name__
        if kind == "CPU":
            mode = getattr(hw, "_mode", "")
            how = _CPU_METHODS.get(mode, f"codecarbon mode {mode}")
            if not how.startswith("measured"):
                how += f"; TDP {hw._tdp:g} W for {hw.get_model()!r}" if getattr(hw, "_tdp", None) else ""
            methods["cpu"] = how
        elif kind == "GPU":
            methods["gpu"] = "measured: NVML energy counters"
        elif kind == "RAM":
            forced = getattr(hw, "_force_ram_power", None)
            methods["ram"] = (f"constant: {forced} W" if forced else
                              "estimated: codecarbon's model of the installed memory modules (no counters)")
        elif kind == "AppleSiliconChip":
            methods[hw.chip_part.lower()] = "measured: powermetrics"
    return methods


class EnergyMeter:
    """Tracks the energy of a ``with`` block; ``record`` holds the result afterwards (never raises)."""

    def __init__(self, *stages: str) -> None:
        self.stages = stages
        self.record: EnergyRecord = not_measured("the block has not finished", stages)
        self._tracker: Any = None
        self._starter: threading.Thread | None = None
        self._capture: _Capture | None = None
        self._messages: list[str] = []

    def __enter__(self) -> EnergyMeter:
        if not settings.energy_enabled():
            self.record = not_measured("switched off (CROPCORE_ENERGY=off)", self.stages)
            return self
        try:
            self._begin()
        except Exception as exc:
            self._forget()
            self.record = not_measured(f"{type(exc).__name__}: {exc}", self.stages)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._tracker is None:
            return
        try:
            self.record = self._finish()
        except Exception as error:
            self.record = not_measured(f"{type(error).__name__}: {error}", self.stages)
        finally:
            self._forget()

    def _begin(self) -> None:
        tracker_cls, self._capture = _codecarbon()
        code = settings.energy_country()
        self._capture.open(self._messages)
        self._tracker = tracker_cls(
            country_iso_code=code, tracking_mode="process", save_to_file=False, save_to_api=False,
            allow_multiple_runs=True,  # no lock file, and side-by-side runs are each measured
            output_dir=tempfile.gettempdir(), log_level="warning", measure_power_secs=15,
        )
        if getattr(self._tracker, "_emissions", None) is None:
            raise RuntimeError(self._reason("codecarbon could not set up its tracker"))
        if getattr(self._tracker, "_country_name", None) is None:
            raise ValueError(f"CROPCORE_ENERGY_COUNTRY={code} is not a country codecarbon knows "
                             "(ISO 3166-1 alpha-3, e.g. BEL, FRA, USA)")
        _read_mean_load(self._tracker)
        # start() reads the clock first, then takes a first reading: let that happen beside the work
        self._starter = threading.Thread(target=self._tracker.start, name="cropcore-energy-start", daemon=True)
        self._starter.start()

    def _finish(self) -> EnergyRecord:
        assert self._starter is not None and self._capture is not None
        self._starter.join()
        self._tracker.stop()
        data = getattr(self._tracker, "final_emissions_data", None)
        if data is None:
            return not_measured(self._reason("codecarbon returned no data"), self.stages)
        notes = tuple(dict.fromkeys(n for n in self._messages if "Multiple instances" not in n))
        return EnergyRecord(
            measured=True, stages=self.stages, seconds=float(data.duration), cpu_kwh=float(data.cpu_energy),
            gpu_kwh=float(data.gpu_energy), ram_kwh=float(data.ram_energy), co2e_g=float(data.emissions) * 1000,
            country=str(data.country_iso_code), methods=_methods(self._tracker), notes=notes,
        )

    def _reason(self, default: str) -> str:
        errors = [m for m in self._messages if m not in ("graceful shutdown. Exceptions:", "stopping.")]
        return errors[-1] if errors else default

    def _forget(self) -> None:
        if self._capture is not None:
            self._capture.close(self._messages)
        self._tracker = None
