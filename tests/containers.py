"""The container tool and the image build behind ``tests/test_container.py``.

The build is slow even from a local torch wheel, so ``conftest.py`` starts it at collection, niced, beside the
rest of the suite, and runs the container tests last; the ``image`` fixture waits for it. ``CROPCORE_CONTAINER_TEST``:

- ``auto`` (default): when the image ``cropcore:test`` exists already (its dependency layers are cached, the build
  redoes the code layers only), or when pip on this machine has a CPU wheel of the pinned torch in a find-links
  folder (the build takes it from ``wheels/``). Without either, a cold build downloads the CUDA build of torch
  and takes far longer, so the tests are skipped;
- ``on``: always, building from nothing if need be;
- ``off``: never.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cropcore import settings

ROOT = settings.PROJECT_ROOT
CONTAINER_SH = ROOT.parent / "shared" / "tools" / "container.sh"
TAG = "cropcore:test"
WHEELS = ROOT / "wheels"
BUILD_TIMEOUT = 3000.0
COLD_BUILD = "about 23 min on 2 busy cores"  # with the CUDA build of torch; measured, README (Docker)


@dataclass(frozen=True)
class Engine:
    name: str
    cli: list[str]  # prefix of a container command: run, exec, logs, rm ...
    build: list[str]
    host_network: bool


def mode() -> str:
    value = os.environ.get("CROPCORE_CONTAINER_TEST", "auto").strip().lower() or "auto"
    if value not in {"auto", "on", "off"}:
        raise pytest.UsageError(f"CROPCORE_CONTAINER_TEST={value!r}: use auto, on or off")
    return value


@functools.cache  # the conftest and the tests ask; docker info takes a while
def find_engine() -> Engine | str:
    """The container tool to use, or why there is none."""
    if mode() == "off":
        return "CROPCORE_CONTAINER_TEST=off"
    docker = shutil.which("docker")
    if docker:
        try:
            ok = subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if ok:
            return Engine("docker", [docker], [docker, "build", "-t", TAG, str(ROOT)], host_network=False)
    if not CONTAINER_SH.is_file():
        return ("no container tool: docker has no reachable daemon here and ../shared/tools/container.sh "
                "is not beside the repository")
    if os.geteuid() != 0:
        return "../shared/tools/container.sh (podman) runs as root only, and docker has no reachable daemon here"
    return Engine("podman", ["bash", str(CONTAINER_SH), "podman"], ["bash", str(CONTAINER_SH), "build", str(ROOT), TAG],
                  host_network=True)


def torch_pin() -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.lower().startswith("torch=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError("requirements.txt pins no torch")


def local_torch_wheel() -> Path | None:
    """A CPU wheel of the pinned torch for the image's Python (3.11) in wheels/ or pip's find-links folders."""
    folders = [WHEELS, *map(Path, os.environ.get("PIP_FIND_LINKS", "").split())]
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True,
                          text=True, timeout=60)
    folders += map(Path, proc.stdout.split()) if proc.returncode == 0 else []
    pattern = f"torch-{torch_pin()}+cpu-cp311-cp311-*{platform.machine()}.whl"
    return next((w for folder in folders if folder.is_dir() for w in sorted(folder.glob(pattern))), None)


def image_id(engine: Engine) -> str:
    proc = subprocess.run([*engine.cli, "image", "inspect", "-f", "{{.Id}}", TAG], capture_output=True, text=True,
                          timeout=120)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def skip_reason(engine: Engine | str) -> str | None:
    """Why the container tests do not run here, or None when they do."""
    if isinstance(engine, str):
        return engine
    if mode() == "auto" and local_torch_wheel() is None and not image_id(engine):
        return (f"no image {TAG} yet and no CPU wheel of torch {torch_pin()} here: a cold build with the CUDA build "
                f"of torch takes {COLD_BUILD}; CROPCORE_CONTAINER_TEST=on builds it (README, Docker)")
    return None


class Build:
    """One image build in the background (niced), with the local torch wheel linked into wheels/ while it runs."""

    def __init__(self, engine: Engine, log: Path) -> None:
        self.engine, self.log = engine, log
        self.previous = image_id(engine)
        self.offered = local_torch_wheel()  # the torch wheel the build finds in wheels/, if any
        self.wheel, self._made_dir = self._place_wheel()
        self.started = time.monotonic()
        with open(log, "w") as out:
            self.proc = subprocess.Popen(["nice", "-n", "10", *engine.build], stdout=out, stderr=subprocess.STDOUT,
                                         cwd=ROOT, start_new_session=True)

    def _place_wheel(self) -> tuple[Path | None, bool]:
        wheel = self.offered
        if wheel is None or wheel.parent == WHEELS:
            return None, False
        made = not WHEELS.exists()
        WHEELS.mkdir(exist_ok=True)
        target = WHEELS / wheel.name
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copyfile(wheel, target)
        return target, made

    def _clean(self) -> None:
        if self.wheel is not None:
            self.wheel.unlink(missing_ok=True)
            if self._made_dir:
                WHEELS.rmdir()
            self.wheel = None

    def wait(self) -> tuple[int, float]:
        """Exit status and seconds since the start; the image it replaces is removed."""
        try:
            rc = self.proc.wait(timeout=max(1.0, BUILD_TIMEOUT - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.stop()
            rc = -1
        self._clean()
        if rc == 0 and self.previous and self.previous != image_id(self.engine):
            # its code layers only: the cached dependency layers belong to the new image too
            subprocess.run([*self.engine.cli, "rmi", self.previous], capture_output=True, timeout=300)
        return rc, time.monotonic() - self.started

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._clean()


_early: Build | None = None


def start_early(log: Path) -> None:
    """Start the build now, when the container tests will run (conftest, at collection)."""
    global _early
    engine = find_engine()
    if skip_reason(engine) is None and isinstance(engine, Engine):
        _early = Build(engine, log)


def early() -> Build | None:
    return _early


def stop_early() -> None:
    if _early is not None:
        _early.stop()
