"""Nobody but the catalog's owner reaches its database, the STAC API is read-only, the dashboard keeps its guards.

Run against the real PostgreSQL and STAC API that ``serve()`` starts (fixture ``stac_api``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cropcore import settings
from cropcore.aoi import MAX_GEOJSON_BYTES
from cropcore.stac import server as stac_server

PSQL = stac_server._pg_bin("psql")
COLLECTION = "worldcereal-s2-l2a-monthly"
ITEM = "worldcereal-be-2021-03"
NO_PASSFILE = "/nonexistent/.pgpass"  # no ~/.pgpass may supply a password


def client_env(**overrides: str) -> dict[str, str]:
    """libpq settings of the embedded database with its password (nothing else inherited), then ``overrides``."""
    env = {k: v for k, v in stac_server.pg_env().items() if k.startswith("PG")}
    return {"PATH": os.environ["PATH"], "PGPASSFILE": NO_PASSFILE, "PGCONNECT_TIMEOUT": "5", **env, **overrides}


def psql(sql: str, env: dict[str, str], user: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``sql`` with psql (never prompting for a password), as ``user`` when given."""
    cmd = [PSQL, "-X", "-w", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, cwd="/")


@pytest.fixture
def stranger() -> Iterator[str]:
    """A throwaway second Unix user (deleted afterwards)."""
    if os.geteuid() != 0:
        pytest.skip("creating a second Unix user needs root")
    if shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("useradd/runuser are not installed")
    name = f"ccprobe{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    yield name
    subprocess.run(["userdel", name], check=True, capture_output=True)


@pytest.fixture
def marker() -> Iterator[Path]:
    """A path in /tmp that ``COPY ... TO PROGRAM 'touch ...'`` would create (removed afterwards)."""
    path = Path("/tmp") / f"cropcore-copy-to-program-{uuid.uuid4().hex}"
    yield path
    path.unlink(missing_ok=True)


def test_the_database_asks_the_owner_for_the_password(stac_api):
    assert psql("SELECT 1", client_env()).stdout.strip() == "1"  # the password is the key
    no_password = client_env()
    del no_password["PGPASSWORD"]
    proc = psql("SELECT 1", no_password)
    assert proc.returncode != 0 and "no password supplied" in proc.stderr
    proc = psql("SELECT 1", client_env(PGPASSWORD="cropcore"))  # the old fixed password
    assert proc.returncode != 0 and "password authentication failed" in proc.stderr


def test_the_database_listens_on_no_tcp_port(stac_api):
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", settings.pg_port()), 2):
        pass
    proc = psql("SELECT 1", client_env(PGHOST="127.0.0.1"))
    assert proc.returncode != 0 and "Connection refused" in proc.stderr
    assert psql("SHOW listen_addresses", client_env()).stdout.strip() == ""
    rules = psql("SELECT DISTINCT type || ' ' || auth_method FROM pg_hba_file_rules", client_env()).stdout.split()
    assert rules == ["local", "scram-sha-256"]  # no trust, no host line


def test_password_file_and_socket_folder_are_private(stac_api):
    lay = stac_server.layout()
    owner = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    for path, mode in ((lay.pg, 0o700), (lay.pg_socket, 0o700), (lay.pg_password, 0o600)):
        info = path.stat()
        assert (oct(stat.S_IMODE(info.st_mode)), info.st_uid) == (oct(mode), owner), path
    assert stat.S_ISSOCK((lay.pg_socket / f".s.PGSQL.{settings.pg_port()}").stat().st_mode)
    assert not stat.S_IMODE(lay.run.stat().st_mode) & 0o022  # the old socket folder was world-writable


def test_another_local_user_cannot_reach_the_database(stac_api, stranger, marker):
    lay = stac_server.layout()
    for cmd in ([shutil.which("ls"), str(lay.pg_socket)], [shutil.which("cat"), str(lay.pg_password)]):
        proc = subprocess.run(["runuser", "-u", stranger, "--", *cmd], capture_output=True, text=True, cwd="/")
        assert proc.returncode != 0 and "Permission denied" in proc.stderr, cmd
    copy = f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'"
    # even with the password: the socket's folder is closed to them and no TCP port is open
    for host, refusal in ((str(lay.pg_socket), "Permission denied"), ("127.0.0.1", "Connection refused")):
        proc = psql(copy, client_env(PGHOST=host), user=stranger)
        assert proc.returncode != 0 and refusal in proc.stderr, (host, proc.stdout, proc.stderr)
        assert not marker.exists()
    assert psql(copy, client_env()).returncode == 0 and marker.exists()  # the same command, as the owner, runs


def test_a_trust_cluster_from_an_older_version_is_replaced_on_serve(stac_api):
    lay = stac_server.layout()
    stac_server.stop()
    try:  # what an older cropcore left: trust for everyone, TCP on loopback, no password file
        (lay.pgdata / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        lay.pg_password.unlink()
        lay.pg_log.touch()
        stac_server._chown_for_db(lay.pg_log)
        subprocess.run(stac_server._as_db_owner([
            stac_server._pg_bin("pg_ctl"), "start", "-w", "-D", str(lay.pgdata), "-l", str(lay.pg_log),
            "-o", f"-h 127.0.0.1 -p {settings.pg_port()} -k {lay.pg_socket}"]), check=True, capture_output=True)
        old = {"PATH": os.environ["PATH"], "PGPASSFILE": NO_PASSFILE, "PGHOST": "127.0.0.1",
               "PGPORT": str(settings.pg_port()), "PGUSER": "cropcore", "PGDATABASE": "postgres"}
        assert psql("SELECT 1", old).stdout.strip() == "1"  # anyone could connect
    finally:
        assert stac_server.serve() == stac_api
    assert psql("SELECT 1", old).returncode != 0
    assert (lay.pgdata / "pg_hba.conf").read_text() == stac_server.PG_HBA
    no_password = client_env()
    del no_password["PGPASSWORD"]
    assert psql("SELECT 1", no_password).returncode != 0
    assert requests.get(f"{stac_api}/collections/{COLLECTION}/items/{ITEM}", timeout=10).status_code == 200


@pytest.mark.parametrize(("method", "path", "kind"), [
    ("POST", "/collections", "collection"),
    ("PUT", f"/collections/{COLLECTION}", "collection"),
    ("DELETE", f"/collections/{COLLECTION}", None),
    ("POST", f"/collections/{COLLECTION}/items", "item"),
    ("PUT", f"/collections/{COLLECTION}/items/{ITEM}", "item"),
    ("PATCH", f"/collections/{COLLECTION}/items/{ITEM}", "item"),
    ("DELETE", f"/collections/{COLLECTION}/items/{ITEM}", None),
])
def test_the_stac_api_refuses_writes(stac_api, method, path, kind):
    urls = {"collection": f"{stac_api}/collections/{COLLECTION}",
            "item": f"{stac_api}/collections/{COLLECTION}/items/{ITEM}"}
    before = {url: requests.get(url, timeout=10).json() for url in urls.values()}
    body = None
    if kind:  # a valid document, so that a write endpoint would take it
        body = requests.get(urls[kind], timeout=10).json()
        body["id"] += "-injected" if method == "POST" else ""
        body.setdefault("properties", {})["changed"] = True
    resp = requests.request(method, stac_api + path, json=body, timeout=10)
    assert resp.status_code in (404, 405), resp.text
    for url, document in before.items():
        assert requests.get(url, timeout=10).json() == document
        assert requests.get(url + "-injected", timeout=10).status_code == 404


def test_the_dashboard_keeps_xsrf_protection_and_a_small_upload_limit():
    config = tomllib.loads((settings.PROJECT_ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert config["enableXsrfProtection"] is True and config["enableCORS"] is True
    assert MAX_GEOJSON_BYTES / 2**20 < config["maxUploadSize"] <= 10  # MB: room for the app's own 1 MB check
