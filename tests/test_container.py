"""The Docker image: built from the Dockerfile, started with the sample data, it serves the dashboard and the
embedded STAC API and maps the demo area with the shipped model.

Runs where a container tool is available: ``docker`` with a reachable daemon, else
``../shared/tools/container.sh`` (podman with host networking, root only) beside the repository; skipped
otherwise, and by ``CROPCORE_CONTAINER_TEST`` (``tests/containers.py``). The image is built once per session,
started at collection beside the rest of the suite (``conftest.py``); these tests run last.

The container gets free ports of its own, so the suite's STAC API and database are never touched, and it is
removed at the end even when a test fails.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import containers
import numpy as np
import pytest
from containers import Engine

from cropcore import settings
from cropcore.errors import DataDirError

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(3600)]

START_TIMEOUT = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[-6:])} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def engine() -> Engine:
    found = containers.find_engine()
    reason = containers.skip_reason(found)
    if reason is not None or isinstance(found, str):
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image, built once per session (or by the build conftest started at collection); prints how long."""
    early = containers.early()
    build = early or containers.Build(engine, tmp_path_factory.mktemp("container") / "build.log")
    rc, seconds = build.wait()
    assert rc == 0, f"image build failed ({rc}):\n{build.log.read_text()[-6000:]}"
    print(f"\n{engine.name}: image {containers.TAG} built in {seconds:.0f} s"
          f"{' (niced, beside the suite)' if early else ''}; in wheels/: "
          f"{build.offered.name if build.offered else 'no torch wheel (torch from an index)'}")
    return containers.TAG


@dataclass(frozen=True)
class Running:
    name: str
    engine: Engine
    ui_port: int
    stac_port: int
    pg_port: int
    out: Path

    def exec(self, *args: str, timeout: float = 120.0) -> str:
        return _run([*self.engine.cli, "exec", self.name, *args], timeout).stdout


def _health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def container(engine: Engine, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The image running with the sample data at /data (read-only) and an output folder at /out."""
    try:
        data = settings.data_dir("worldcereal")
    except DataDirError as err:
        pytest.skip(str(err))
    out = tmp_path_factory.mktemp("container-out")
    out.chmod(0o777)
    ports = {"ui": _free_port(), "stac": _free_port(), "pg": _free_port()}
    while len(set(ports.values())) < 3:
        ports["pg"] = _free_port()
    name = f"cropcore-test-{uuid.uuid4().hex[:8]}"
    net = ["--network", "host"] if engine.host_network else ["-p", f"127.0.0.1:{ports['ui']}:{ports['ui']}"]
    cmd = [*engine.cli, "run", "-d", "--name", name, *net,
           "-e", f"PORT={ports['ui']}", "-e", f"CROPCORE_STAC_PORT={ports['stac']}",
           "-e", f"CROPCORE_PG_PORT={ports['pg']}", "-e", "OMP_NUM_THREADS=2",
           "-v", f"{data}:/data:ro", "-v", f"{out}:/out", image]
    try:
        t0 = time.monotonic()
        _run(cmd, 120)
        while not _health(ports["ui"]):
            state = _run([*engine.cli, "inspect", "-f", "{{.State.Running}}", name], 60, check=False).stdout
            if state.strip() != "true":
                raise AssertionError(f"the container stopped before it was healthy:\n{_logs(engine, name)}")
            if time.monotonic() - t0 > START_TIMEOUT:
                raise AssertionError(f"not healthy within {START_TIMEOUT:.0f} s:\n{_logs(engine, name)}")
            time.sleep(1)
        print(f"\ncontainer {name} healthy {time.monotonic() - t0:.0f} s after start")
        yield Running(name, engine, ports["ui"], ports["stac"], ports["pg"], out)
    finally:
        subprocess.run([*engine.cli, "rm", "-f", name], capture_output=True, timeout=120)


def _logs(engine: Engine, name: str) -> str:
    proc = subprocess.run([*engine.cli, "logs", name], capture_output=True, text=True, timeout=60)
    return (proc.stdout + proc.stderr)[-6000:]


def test_dashboard_health_endpoint(container: Running) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{container.ui_port}/_stcore/health", timeout=10) as resp:
        assert resp.status == 200
        assert resp.read().decode().strip() == "ok"


def test_stac_api_inside_serves_the_sample_collections(container: Running) -> None:
    body = container.exec("python", "-c", "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
                          f"'http://127.0.0.1:{container.stac_port}/collections', timeout=20).read().decode())")
    ids = {c["id"] for c in json.loads(body)["collections"]}
    assert {"worldcereal-s2-l2a-monthly", "ftw-s2-l2a"} <= ids
    status = json.loads(container.exec(".venv/bin/python", "-m", "cropcore", "catalog", "status"))
    assert status["postgres"] is True and status["healthy"] is True


def _listening(table: str) -> set[tuple[str, int]]:
    """(local address in hex, port) of every listening TCP socket in a /proc/net/tcp{,6} table."""
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
            address, port = fields[1].split(":")
            found.add((address, int(port, 16)))
    return found


def test_stac_api_on_loopback_and_postgres_without_tcp(container: Running) -> None:
    listening = _listening(container.exec("cat", "/proc/net/tcp")) | _listening(container.exec("cat", "/proc/net/tcp6"))
    stac = {address for address, port in listening if port == container.stac_port}
    assert stac == {"0100007F"}, f"the STAC API must listen on 127.0.0.1 only, found {stac}"
    assert not any(port == container.pg_port for _, port in listening), "PostgreSQL must not listen on TCP"
    socket_dir = container.exec("stat", "-c", "%a %U", "/var/lib/cropcore/pg").split()
    assert socket_dir == ["700", "postgres"]


def test_maps_the_demo_area_with_the_shipped_model(container: Running, demo_bbox: tuple[float, ...]) -> None:
    import rasterio

    t0 = time.monotonic()
    log = container.exec(".venv/bin/python", "-m", "cropcore", "predict", "--bbox", *map(str, demo_bbox),
                         "--start", "2020-11-01", "--end", "2021-10-31", "--out", "/out/demo.tif", timeout=900)
    print(f"\ndemo area mapped inside the container in {time.monotonic() - t0:.0f} s")
    assert (container.out / "demo.tif").is_file(), log
    with rasterio.open(container.out / "demo.tif") as src:
        assert src.crs is not None and src.crs.to_epsg() == 32631  # UTM 31N, the WorldCereal tile 31UFS
        assert src.dtypes[0] == "uint8" and src.width > 50 and src.height > 50
        classes = src.read(1)
        colormap = src.colormap(1)
    mapped = classes[classes != 255]  # 255: no data; 254: uncertain (below the calibrated confidence)
    assert mapped.size > 0.9 * classes.size, "the demo area lies inside the sample scenes"
    assert set(np.unique(mapped).tolist()) <= set(colormap), "every mapped value is in the map's colour table"
    assert len(np.unique(mapped[mapped < 254])) >= 2, "at least two classes"
