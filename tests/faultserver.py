"""A small STAC API and file server on 127.0.0.1 that misbehaves on purpose, for the reliability tests.

It is a real HTTP server (``http.server``) in its own process (GDAL holds the GIL while it reads a URL, so
a server thread in the reading process would never answer): ``/`` is a STAC API landing page,
``/search`` answers with the items it was given (GET or POST), and ``/files/<name>`` serves files with
HTTP range requests, as GDAL reads a Cloud-Optimized GeoTIFF. The mode makes every API request fail in
one way: ``"ok"``, ``"500"``, ``"malformed"`` (truncated JSON) or ``"slow"`` (answers after ``delay``
seconds). Files not registered answer 404. The test process steers it through ``POST /_control``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pystac
import requests
from loopback import LoopbackServer, QuietHandler

CONFORMS = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"]


class FaultServer:
    """Handle on a running server process: ``url``, ``set_mode``, ``serve_items``, ``requests``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _control(self, **state: Any) -> dict[str, Any]:
        answer = requests.post(f"{self.url}/_control", json=state, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        """``"ok"``, ``"500"``, ``"malformed"`` or ``"slow"`` (answers after ``delay`` seconds)."""
        self._control(mode=mode, delay=delay)

    @property
    def requests(self) -> int:
        """API and file requests answered so far."""
        return int(self._control()["requests"])

    def serve_items(self, items: list[pystac.Item], *, missing: Mapping[str, str] | None = None) -> list[pystac.Item]:
        """Serve ``items`` with every ``file://`` asset moved to ``/files/``; ``missing`` (item id -> asset key)
        names assets whose file is not served (404). Returns the items as served."""
        served, files = [], {}
        for item in items:
            copy = item.clone()
            for key, asset in copy.assets.items():
                name = f"{copy.id}-{key}.tif"
                if (missing or {}).get(copy.id) != key:
                    files[name] = asset.href.removeprefix("file://")
                asset.href = f"{self.url}/files/{name}"
            copy.set_self_href(None)
            served.append(copy)
        self._control(items=[i.to_dict() for i in served], files=files)
        return served


class _Server(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.state: dict[str, Any] = {"mode": "ok", "delay": 0.0, "items": [], "files": {}, "requests": 0}
        self.lock = threading.Lock()


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_control":
            with self.server.lock:
                self.server.state.update(json.loads(body or b"{}"))
                stats = {"requests": self.server.state["requests"]}
            self._send(200, json.dumps(stats).encode(), "application/json")
            return
        self._answer(head=False)

    def _answer(self, *, head: bool) -> None:
        with self.server.lock:
            self.server.state["requests"] += 1
            state = dict(self.server.state)
        path = self.path.split("?")[0]
        if path.startswith("/files/"):
            self._file(state["files"].get(path.removeprefix("/files/")), head=head)
            return
        if state["mode"] == "slow":
            threading.Event().wait(state["delay"])
        if state["mode"] == "500":
            self._send(500, b'{"code": "InternalError", "description": "database is down"}', "application/json")
            return
        body = json.dumps(self._document(path, state["items"])).encode()
        self._send(200, body[: len(body) // 2] if state["mode"] == "malformed" else body, "application/json")

    def _document(self, path: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        url = self.server.url
        if path.rstrip("/") == "/search":
            return {"type": "FeatureCollection", "features": items, "links": []}
        return {"type": "Catalog", "id": "faults", "description": "misbehaving STAC API", "stac_version": "1.0.0",
                "conformsTo": CONFORMS,
                "links": [{"rel": "self", "href": url}, {"rel": "root", "href": url},
                          {"rel": "search", "href": f"{url}/search", "method": "POST",
                           "type": "application/geo+json"}]}

    def _file(self, source: str | None, *, head: bool) -> None:
        if source is None:
            self._send(404, b"not found", "text/plain")
            return
        data = Path(source).read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match is None:
            self._send(200, b"" if head else data, "image/tiff", length=len(data))
            return
        start = int(match[1])
        stop = min(int(match[2]) + 1 if match[2] else len(data), len(data))
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        self._finish(b"" if head else data[start:stop], "image/tiff", length=stop - start)

    def _send(self, code: int, body: bytes, kind: str, *, length: int | None = None) -> None:
        self.send_response(code)
        self._finish(body, kind, length=len(body) if length is None else length)

    def _finish(self, body: bytes, kind: str, *, length: int) -> None:
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if body:
            self.wfile.write(body)


@contextmanager
def fault_server() -> Iterator[FaultServer]:
    """A :class:`FaultServer` in a child process on a free 127.0.0.1 port, stopped afterwards."""
    proc = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield FaultServer(proc.stdout.readline().strip())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    server = _Server()
    print(server.url, flush=True)
    server.serve_forever(poll_interval=0.1)
