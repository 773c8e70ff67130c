"""The embedded STAC API: stac-fastapi-pgstac over a project-local PostgreSQL + PostGIS.

``serve()`` builds the catalog if needed (:mod:`cropcore.stac.build`), initialises a database cluster
under ``CROPCORE_HOME/pg``, starts PostgreSQL, migrates pgstac and upserts the collections and items with
pypgstac (idempotent), then starts uvicorn from the STAC virtual environment (``.venv-stac``, whose pins
clash with streamlit's) on 127.0.0.1. ``stop()`` ends only the processes recorded in its own pid files.

No other local user can reach the database:

- PostgreSQL listens on no TCP address (``listen_addresses = ''``), only on a Unix socket in
  ``CROPCORE_HOME/pg/socket``. ``CROPCORE_HOME/pg`` (cluster, socket, password) is mode 0700 and belongs
  to the database owner: the user running cropcore, or ``postgres`` when cropcore runs as root
  (PostgreSQL refuses to run as root). cropcore, pypgstac and the API server run as that user or as
  root, so they can enter it; nobody else can.
- ``pg_hba.conf`` is the single line ``local all cropcore scram-sha-256``, so the socket asks for a
  password too: generated at ``initdb`` into ``CROPCORE_HOME/pg/password`` (0600). It reaches psql,
  pypgstac and the API in ``PGPASSWORD`` only, never on a command line (every user can read those).
  A password rather than ``peer``: the OS user (root, or any name) differs from the database role.
- A cluster made by an older cropcore (``trust``, TCP on loopback) is deleted and initialised afresh on
  the next ``serve``, together with an API connected to it; the catalog is loaded again from its files.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests

from cropcore import settings
from cropcore.errors import ServiceError
from cropcore.stac.build import build_catalog

PG_DATABASE = "cropcore_stac"
PG_USER = "cropcore"
PG_HBA = f"local all {PG_USER} scram-sha-256\n"


@dataclass(frozen=True)
class Layout:
    """Where the embedded catalog keeps its files."""

    home: Path

    @property
    def catalog(self) -> Path:
        return self.home / "catalog"

    @property
    def pg(self) -> Path:
        """The database owner's private folder (0700): cluster, socket and password."""
        return self.home / "pg"

    @property
    def pgdata(self) -> Path:
        return self.pg / "data"

    @property
    def pg_socket(self) -> Path:
        return self.pg / "socket"

    @property
    def pg_password(self) -> Path:
        return self.pg / "password"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def api_pid(self) -> Path:
        return self.run / "stac-api.pid"

    @property
    def api_log(self) -> Path:
        return self.run / "stac-api.log"

    @property
    def pg_log(self) -> Path:
        return self.run / "postgres.log"


def layout() -> Layout:
    """The layout under ``CROPCORE_HOME``."""
    return Layout(settings.home())


def api_url() -> str:
    """URL of the embedded STAC API."""
    return f"http://127.0.0.1:{settings.stac_port()}"


def _pg_bin(tool: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), key=lambda p: int(p.parts[-3]))
    if found:
        return str(found[-1])
    path = shutil.which(tool)
    if path is None:
        raise ServiceError(f"PostgreSQL's {tool} was not found: run `make setup` (installs postgresql, postgis)")
    return path


def _as_db_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], *, env: dict[str, str] | None = None, what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise ServiceError(f"{what} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc.stdout


def _chown_for_db(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in (path, *path.rglob("*")):
            os.chown(p, pw.pw_uid, pw.pw_gid)


def pg_env() -> dict[str, str]:
    """Environment for libpq clients (psql, pypgstac) of the embedded database, password included."""
    lay = layout()
    return {
        **os.environ,
        "PGHOST": str(lay.pg_socket), "PGPORT": str(settings.pg_port()), "PGUSER": PG_USER,
        "PGPASSWORD": lay.pg_password.read_text().strip(), "PGDATABASE": PG_DATABASE,
    }


def _pg_running(lay: Layout) -> bool:
    if not (lay.pgdata / "PG_VERSION").exists():
        return False
    proc = subprocess.run(_as_db_owner([_pg_bin("pg_ctl"), "status", "-D", str(lay.pgdata)]),
                          capture_output=True, text=True)
    return proc.returncode == 0


def _stop_postgres(lay: Layout) -> bool:
    """Stop the cluster if it runs; True if it did."""
    if not _pg_running(lay):
        return False
    _run(_as_db_owner([_pg_bin("pg_ctl"), "stop", "-m", "fast", "-D", str(lay.pgdata)]), what="stopping PostgreSQL")
    return True


def _cluster_is_current(lay: Layout) -> bool:
    """True when the cluster exists with this module's access rules (password over the socket only)."""
    try:
        return lay.pg_password.is_file() and (lay.pgdata / "pg_hba.conf").read_text() == PG_HBA
    except OSError:
        return False


def _init_cluster(lay: Layout) -> None:
    """Create the cluster afresh (replacing any older one): generated password, Unix socket only."""
    _stop_postgres(lay)
    if lay.pg.exists():
        shutil.rmtree(lay.pg)
    lay.pg_socket.mkdir(parents=True)
    fd = os.open(lay.pg_password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32))
    for folder in (lay.pg, lay.pg_socket):
        os.chmod(folder, 0o700)
    _chown_for_db(lay.pg)
    _run(_as_db_owner([_pg_bin("initdb"), "-D", str(lay.pgdata), "-U", PG_USER, "--pwfile", str(lay.pg_password),
                       "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"]), what="initdb")
    (lay.pgdata / "pg_hba.conf").write_text(PG_HBA)
    with open(lay.pgdata / "postgresql.conf", "a") as conf:
        conf.write("listen_addresses = ''  # cropcore: Unix socket only\n")


def start_postgres() -> None:
    """Initialise (once, or again if made by an older cropcore) and start the project-local cluster."""
    lay = layout()
    lay.run.mkdir(parents=True, exist_ok=True)
    os.chmod(lay.run, 0o755)
    if not _cluster_is_current(lay):
        _init_cluster(lay)
    if not _pg_running(lay):
        lay.pg_log.touch()
        _chown_for_db(lay.pg_log)
        opts = f"-p {settings.pg_port()} -k {shlex.quote(str(lay.pg_socket))}"
        _run(_as_db_owner([_pg_bin("pg_ctl"), "start", "-w", "-t", "30", "-D", str(lay.pgdata),
                           "-l", str(lay.pg_log), "-o", opts]), what="starting PostgreSQL")
    env = pg_env()
    exists = _run([_pg_bin("psql"), "-d", "postgres", "-tAc",
                   f"SELECT 1 FROM pg_database WHERE datname='{PG_DATABASE}'"], env=env, what="psql")
    if not exists.strip():
        _run([_pg_bin("createdb"), PG_DATABASE], env=env, what="createdb")


def load_catalog(force_build: bool = False) -> Path:
    """Build the catalog if needed, migrate pgstac and upsert collections and items (idempotent)."""
    lay = layout()
    stac_dir = build_catalog(lay.catalog, force=force_build)
    pypgstac = str(settings.stac_venv() / "bin" / "pypgstac")
    if not Path(pypgstac).exists():
        raise ServiceError(f"{pypgstac} not found: run `make setup` to create the STAC environment")
    env = pg_env()  # pypgstac connects with libpq's PG* variables: no --dsn, so no password in argv
    _run([pypgstac, "migrate"], env=env, what="pypgstac migrate")
    for kind in ("collections", "items"):
        _run([pypgstac, "load", kind, str(stac_dir / f"{kind}.ndjson"), "--method", "upsert"],
             env=env, what=f"pypgstac load {kind}")
    return stac_dir


def user_scenes_dir() -> Path:
    """Where ``catalog add`` keeps the user's items and COGs (not under ``catalog/``, which a build replaces)."""
    return layout().home / "user-scenes"


def load_user_items(folder: Path) -> bool:
    """Make the running database's user collection match ``folder`` (``collection.json``, ``*/item.json``).

    Upserts the collection and items with pypgstac, as :func:`load_catalog` does, and deletes the
    collection's items no longer in ``folder``. Returns False, doing nothing, when PostgreSQL is not running:
    :func:`serve` calls this again.
    """
    collection = folder / "collection.json"
    if not collection.is_file() or not _pg_running(layout()):
        return False
    items = [json.loads(p.read_text()) for p in sorted(folder.glob("[!.]*/item.json"))]
    coll_id = json.loads(collection.read_text())["id"]
    pypgstac = str(settings.stac_venv() / "bin" / "pypgstac")
    env = pg_env()
    with tempfile.TemporaryDirectory(prefix="cropcore-user-") as tmp:
        files = {"collections": Path(tmp, "collections.ndjson"), "items": Path(tmp, "items.ndjson")}
        files["collections"].write_text(collection.read_text().strip() + "\n")
        files["items"].write_text("".join(json.dumps(item) + "\n" for item in items))
        for kind, path in files.items():
            if path.stat().st_size:
                _run([pypgstac, "load", kind, str(path), "--method", "upsert"], env=env, what=f"pypgstac load {kind}")
        # psql substitutes :'name' variables (quoted as literals) in a script file, not in -c
        script = Path(tmp, "delete.sql")
        script.write_text("DELETE FROM pgstac.items WHERE collection = :'coll' "
                          "AND NOT (id = ANY (string_to_array(:'keep', ' ')));\n")
        _run([_pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"coll={coll_id}",
              "-v", f"keep={' '.join(item['id'] for item in items)}", "-f", str(script)], env=env,
             what="deleting removed user items")
    return True


def _api_pid(lay: Layout) -> int | None:
    """PID of the API server this module started, if it is still that process."""
    try:
        pid = int(lay.api_pid.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"stac_fastapi.pgstac" in cmdline else None


def running() -> bool:
    """True when the API server started by :func:`serve` is alive."""
    return _api_pid(layout()) is not None


def healthy(url: str | None = None, timeout: float = 2.0) -> bool:
    """True when the STAC API at ``url`` answers its landing page."""
    try:
        return requests.get(url or api_url(), timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def serve(*, force_build: bool = False, wait: float = 30.0) -> str:
    """Start (or reuse) the embedded STAC API and return its URL."""
    lay = layout()
    url = api_url()
    if not _cluster_is_current(lay):
        stop()  # an API connected to an older cluster restarts with the new one
    ours = _api_pid(lay) is not None
    if not ours and healthy(url):
        raise ServiceError(f"port {settings.stac_port()} already serves something else: "
                           "set CROPCORE_STAC_PORT to a free port")
    start_postgres()
    load_catalog(force_build=force_build)  # idempotent: keeps a running API's data current
    load_user_items(user_scenes_dir())  # the scenes added with `catalog add`
    if ours and healthy(url):
        return url
    # stac-fastapi-pgstac puts PGHOST into a postgresql:// URI: a socket folder goes there percent-encoded
    env = {**pg_env(), "PGHOST": quote(str(lay.pg_socket), safe=""), "ENABLE_TRANSACTIONS_EXTENSIONS": "false",
           "STAC_FASTAPI_TITLE": "cropcore embedded catalog", "STAC_FASTAPI_LANDING_ID": "cropcore",
           "STAC_FASTAPI_DESCRIPTION": "Real Sentinel-2 sample scenes served on loopback",
           "STAC_FASTAPI_VERSION": "1.0.0"}
    cmd = [str(settings.stac_venv() / "bin" / "uvicorn"), "--factory", "stac_fastapi.pgstac.app:create_app",
           "--host", "127.0.0.1", "--port", str(settings.stac_port()), "--log-level", "warning"]
    with open(lay.api_log, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=lay.run)
    lay.api_pid.write_text(str(proc.pid))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"the STAC API exited with {proc.returncode}; see {lay.api_log}")
        if healthy(url, timeout=0.5):
            return url
        time.sleep(0.1)
    stop()
    raise ServiceError(f"the STAC API did not answer within {wait:.0f} s; see {lay.api_log}")


def stop() -> list[str]:
    """Stop what :func:`serve` started (and nothing else); returns what was stopped."""
    lay = layout()
    stopped = []
    pid = _api_pid(lay)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        stopped.append(f"STAC API (pid {pid})")
    lay.api_pid.unlink(missing_ok=True)
    if _stop_postgres(lay):
        stopped.append("PostgreSQL")
    return stopped


def status() -> dict[str, object]:
    """State of the embedded catalog: built, database running, API pid and health."""
    lay = layout()
    return {
        "url": api_url(),
        "built": (lay.catalog / "stac" / "BUILD.json").exists(),
        "postgres": _pg_running(lay),
        "api_pid": _api_pid(lay),
        "healthy": healthy(),
    }
