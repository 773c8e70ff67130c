"""A read-only STAC API on 127.0.0.1 that answers from given item dicts the way a public catalog does.

It is a real HTTP server (``http.server`` in a thread of the test process): a landing page, ``/conformance``,
``/collections`` and ``/collections/{id}`` (``/items/{item}`` too), and ``GET``/``POST /search`` with
``collections``, ``ids``, ``bbox``, ``intersects``, ``datetime``, ``limit`` and paging through ``next``
links. The cloud filter is served as the catalog declares it: CQL2 (``filter``, JSON or the simple text
form ``eo:cloud_cover <= 20``) and/or the ``query`` extension. A request using an extension the catalog
does not declare, a malformed parameter or an unknown token is a 400; an unknown route a 404; any method
that would write a 405. Items are returned unchanged, in the catalog's own JSON conventions, newest first.

Each :data:`PROFILES` entry mirrors one public catalog: what it declares and how it pages (Earth Search's
stac-server: ``next=<datetime,id,collection>``; pgstac catalogs, the Planetary Computer and Copernicus
Data Space: ``token=next:<id>``; POST ``next`` links carry the whole request body, as in the recorded
Planetary Computer page ``tests/data/catalogs/planetary-computer/search-page-1.json``).
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from loopback import LoopbackServer, QuietHandler
from shapely.geometry import box, shape

CORE = "https://api.stacspec.org/v1.0.0/core"
ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"
COLLECTIONS = "https://api.stacspec.org/v1.0.0/collections"
FEATURES = "https://api.stacspec.org/v1.0.0/ogcapi-features"
QUERY = "https://api.stacspec.org/v1.0.0/item-search#query"
SORT = "https://api.stacspec.org/v1.0.0/item-search#sort"
FIELDS = "https://api.stacspec.org/v1.0.0/item-search#fields"
FILTER = "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter"
OGC_FILTER = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter"
CQL2_BASIC = "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2"
CQL2_JSON = "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json"
CQL2_TEXT = "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text"
OGC_CORE = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"
OGC_GEOJSON = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Profile:
    """What a public catalog declares and how it pages."""

    name: str
    title: str
    conforms: tuple[str, ...]
    paging: str  # "next" (stac-server) or "token" (pgstac)
    counts: bool  # numberMatched / numberReturned in search pages

    @property
    def query(self) -> bool:
        return QUERY in self.conforms

    @property
    def filter(self) -> bool:
        return FILTER in self.conforms or OGC_FILTER in self.conforms


# Earth Search v1 runs stac-server; only its `query` extension is declared here, so the client's `query`
# path is exercised (the catalog may declare CQL2 too by now). The Planetary Computer's list is the one
# it published (CQL2 text and JSON, filter, query, sort, fields); Copernicus Data Space runs
# stac-fastapi-pgstac with the filter extension.
PROFILES = {
    "earth-search": Profile("earth-search", "Earth Search by Element 84",
                            (CORE, ITEM_SEARCH, COLLECTIONS, FEATURES, QUERY, SORT, FIELDS, OGC_CORE, OGC_GEOJSON),
                            paging="next", counts=True),
    "planetary-computer": Profile("microsoft-pc", "Microsoft Planetary Computer STAC API",
                                  (CORE, ITEM_SEARCH, COLLECTIONS, FEATURES, QUERY, SORT, FIELDS, FILTER, OGC_FILTER,
                                   CQL2_BASIC, CQL2_JSON, CQL2_TEXT, OGC_CORE, OGC_GEOJSON),
                                  paging="token", counts=False),
    "copernicus": Profile("cdse-stac", "Copernicus Data Space Ecosystem STAC",
                          (CORE, ITEM_SEARCH, COLLECTIONS, FEATURES, SORT, FIELDS, FILTER, OGC_FILTER, CQL2_BASIC,
                           CQL2_JSON, CQL2_TEXT, OGC_CORE, OGC_GEOJSON),
                          paging="token", counts=True),
}


class BadRequest(Exception):
    """A request the catalog would refuse with 400."""


def item_collection(item: dict[str, Any]) -> str | None:
    """The item's collection id: its ``collection`` field, else its ``collection`` link."""
    if item.get("collection"):
        return item["collection"]
    link = next((lk for lk in item.get("links", []) if lk.get("rel") == "collection"), None)
    return link["href"].rstrip("/").rsplit("/", 1)[-1] if link else None


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise BadRequest(f"invalid datetime {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _interval(text: str) -> tuple[datetime | None, datetime | None]:
    if "/" not in text:
        when = _instant(text)
        return when, when
    start, end = text.split("/", 1)
    lo = None if start in ("", "..") else _instant(start)
    hi = None if end in ("", "..") else _instant(end)
    if lo and hi and lo > hi:
        raise BadRequest(f"datetime interval {text!r} ends before it starts")
    return lo, hi


def _item_times(item: dict[str, Any]) -> tuple[datetime, datetime]:
    props = item["properties"]
    if props.get("datetime"):
        when = _instant(props["datetime"])
        return when, when
    return _instant(props["start_datetime"]), _instant(props["end_datetime"])


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        return False
    ops = {"=": left == right, "<>": left != right}
    if op in ops:
        return ops[op]
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        raise BadRequest(f"cannot compare {left!r} {op} {right!r}") from None


def _value(arg: Any, item: dict[str, Any]) -> Any:
    if isinstance(arg, dict) and "property" in arg:
        name = arg["property"]
        return item.get(name) if name in ("id", "collection") else item["properties"].get(name)
    return arg


def cql2_json(expr: Any, item: dict[str, Any]) -> bool:
    """Evaluate the CQL2-JSON comparisons and logic (and, or, not, =, <>, <, <=, >, >=, in, isNull)."""
    if not isinstance(expr, dict) or "op" not in expr:
        raise BadRequest(f"not a CQL2-JSON expression: {expr!r}")
    op, args = str(expr["op"]).lower(), expr.get("args", [])
    if op == "and":
        return all(cql2_json(a, item) for a in args)
    if op == "or":
        return any(cql2_json(a, item) for a in args)
    if op == "not":
        return not cql2_json(args[0], item)
    if op == "isnull":
        return _value(args[0], item) is None
    if op == "in":
        return _value(args[0], item) in args[1]
    if op in ("=", "<>", "<", "<=", ">", ">=") and len(args) == 2:
        return _compare(op, _value(args[0], item), _value(args[1], item))
    raise BadRequest(f"unsupported CQL2 operator {expr['op']!r}")


_TEXT_TERM = re.compile(r'\s*"?([\w:.\-]+)"?\s*(<=|>=|<>|=|<|>)\s*(-?[\d.]+|\'[^\']*\')\s*')


def cql2_text(text: str) -> dict[str, Any]:
    """The simple CQL2 text this replay understands (``prop op literal`` joined by AND), as CQL2-JSON."""
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE):
        match = _TEXT_TERM.fullmatch(part)
        if match is None:
            raise BadRequest(f"unsupported CQL2 text {part!r}")
        name, op, literal = match.groups()
        value: Any = literal.strip("'") if literal.startswith("'") else float(literal)
        terms.append({"op": op, "args": [{"property": name}, value]})
    return terms[0] if len(terms) == 1 else {"op": "and", "args": terms}


_QUERY_OPS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def query_ext(query: dict[str, Any], item: dict[str, Any]) -> bool:
    """Evaluate the STAC ``query`` extension (eq, neq, lt, lte, gt, gte, in)."""
    for name, tests in query.items():
        value = item["properties"].get(name)
        if not isinstance(tests, dict):
            raise BadRequest(f"query for {name!r} must be an object")
        for op, right in tests.items():
            if op == "in":
                ok = value in right
            elif op in _QUERY_OPS:
                ok = _compare(_QUERY_OPS[op], value, right)
            else:
                raise BadRequest(f"unsupported query operator {op!r}")
            if not ok:
                return False
    return True


@dataclass
class Search:
    """One search request, parsed."""

    collections: list[str] | None
    ids: list[str] | None
    geometry: Any
    interval: tuple[datetime | None, datetime | None] | None
    limit: int
    cql: dict[str, Any] | None
    query: dict[str, Any] | None
    token: str | None

    def matches(self, item: dict[str, Any]) -> bool:
        if self.collections is not None and item_collection(item) not in self.collections:
            return False
        if self.ids is not None and item["id"] not in self.ids:
            return False
        if self.geometry is not None and (item.get("geometry") is None
                                          or not shape(item["geometry"]).intersects(self.geometry)):
            return False
        if self.interval is not None:
            start, end = _item_times(item)
            lo, hi = self.interval
            if (lo is not None and end < lo) or (hi is not None and start > hi):
                return False
        if self.cql is not None and not cql2_json(self.cql, item):
            return False
        return self.query is None or query_ext(self.query, item)


def _json_param(raw: Any, name: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise BadRequest(f"{name} is not valid JSON") from None


def _list_param(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    return [s for s in raw.split(",") if s] if isinstance(raw, str) else [str(s) for s in raw]


def parse_search(params: dict[str, Any], profile: Profile) -> Search:
    """Check and parse a search request (GET query or POST body) against what ``profile`` declares."""
    known = {"collections", "ids", "bbox", "intersects", "datetime", "limit", "filter", "filter-lang",
             "filter_lang", "query", "token", "next", "sortby", "fields"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise BadRequest(f"unknown search parameters {unknown}")
    geometry = None
    if params.get("bbox") is not None and params.get("intersects") is not None:
        raise BadRequest("give bbox or intersects, not both")
    if params.get("bbox") is not None:
        raw = params["bbox"]
        try:
            values = [float(v) for v in (raw.split(",") if isinstance(raw, str) else raw)]
        except (TypeError, ValueError):
            raise BadRequest(f"invalid bbox {raw!r}") from None
        if len(values) != 4 or values[0] > values[2] or values[1] > values[3]:
            raise BadRequest(f"bbox must be west,south,east,north, got {raw!r}")
        geometry = box(*values)
    if params.get("intersects") is not None:
        try:
            geometry = shape(_json_param(params["intersects"], "intersects"))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise BadRequest("intersects is not a GeoJSON geometry") from None
    try:
        limit = int(params.get("limit", 10))
    except (TypeError, ValueError):
        raise BadRequest(f"limit must be an integer, got {params.get('limit')!r}") from None
    if limit < 1:
        raise BadRequest(f"limit must be at least 1, got {limit}")
    cql = None
    if params.get("filter") is not None:
        if not profile.filter:
            raise BadRequest("this catalog does not support the filter extension")
        lang = params.get("filter-lang") or params.get("filter_lang") or (
            "cql2-text" if isinstance(params["filter"], str) else "cql2-json")
        if lang == "cql2-json":
            cql = _json_param(params["filter"], "filter")
        elif lang == "cql2-text":
            cql = cql2_text(params["filter"])
        else:
            raise BadRequest(f"unsupported filter-lang {lang!r}")
    query = None
    if params.get("query") is not None:
        if not profile.query:
            raise BadRequest("this catalog does not support the query extension")
        query = _json_param(params["query"], "query")
        if not isinstance(query, dict):
            raise BadRequest("query must be an object")
    token = params.get("next" if profile.paging == "next" else "token")
    other = params.get("token" if profile.paging == "next" else "next")
    if other is not None:
        raise BadRequest(f"this catalog pages with {'next' if profile.paging == 'next' else 'token'}")
    return Search(_list_param(params.get("collections")), _list_param(params.get("ids")), geometry,
                  _interval(params["datetime"]) if params.get("datetime") else None, min(limit, MAX_LIMIT), cql,
                  query, token)


class _Server(LoopbackServer):
    def __init__(self, items: Sequence[dict[str, Any]], profile: Profile) -> None:
        super().__init__(_Handler)
        self.profile = profile
        self.items = sorted((copy.deepcopy(i) for i in items), key=lambda i: (_item_times(i)[0], i["id"]),
                            reverse=True)  # newest first, as the real catalogs sort by default
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self._record("GET", split.path, params)
        self._route("GET", split.path.rstrip("/") or "/", params)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except json.JSONDecodeError:
            self._record("POST", path, None)
            self._error(400, "BadRequest", "the request body is not valid JSON")
            return
        self._record("POST", path, body)
        if path != "/search":
            self._error(405, "MethodNotAllowed", f"POST is not allowed on {path or '/'}", allow="GET")
            return
        if not isinstance(body, dict):
            self._error(400, "BadRequest", "the search body must be a JSON object")
            return
        self._route("POST", path, body)

    def _refuse_write(self) -> None:
        path = urlsplit(self.path).path
        self._record(self.command, path, None)
        self._error(405, "MethodNotAllowed", f"{self.command} is not allowed: this catalog is read-only",
                    allow="GET, POST" if path.rstrip("/") == "/search" else "GET")

    do_PUT = do_DELETE = do_PATCH = _refuse_write

    def _record(self, method: str, path: str, params: Any) -> None:
        with self.server.lock:
            self.server.log.append({"method": method, "path": path, "params": params})

    def _route(self, method: str, path: str, params: dict[str, Any]) -> None:
        url, profile = self.server.url, self.server.profile
        collections = self._collections()
        parts = path.strip("/").split("/")
        try:
            if path == "/":
                self._send(200, self._landing(collections))
            elif path == "/conformance":
                self._send(200, {"conformsTo": list(profile.conforms)})
            elif path == "/collections":
                self._send(200, {"collections": [self._collection(c) for c in collections],
                                 "links": [{"rel": "self", "href": f"{url}/collections"},
                                           {"rel": "root", "href": url}]})
            elif parts[0] == "collections" and len(parts) == 2 and parts[1] in collections:
                self._send(200, self._collection(parts[1]))
            elif parts[0] == "collections" and len(parts) == 4 and parts[2] == "items":
                found = [i for i in self.server.items if i["id"] == parts[3] and item_collection(i) == parts[1]]
                if not found:
                    raise LookupError(f"item {parts[3]} not found in collection {parts[1]}")
                self._send(200, found[0], kind="application/geo+json")
            elif path == "/search":
                self._send(200, self._search(method, params), kind="application/geo+json")
            else:
                raise LookupError(f"no route {path}")
        except BadRequest as exc:
            self._error(400, "BadRequest", str(exc))
        except LookupError as exc:
            self._error(404, "NotFoundError", str(exc).strip("'"))

    def _collections(self) -> list[str]:
        return sorted({c for c in (item_collection(i) for i in self.server.items) if c})

    def _landing(self, collections: list[str]) -> dict[str, Any]:
        url, profile = self.server.url, self.server.profile
        links = [{"rel": "self", "type": "application/json", "href": f"{url}/"},
                 {"rel": "root", "type": "application/json", "href": f"{url}/"},
                 {"rel": "conformance", "type": "application/json", "href": f"{url}/conformance"},
                 {"rel": "data", "type": "application/json", "href": f"{url}/collections"},
                 {"rel": "search", "type": "application/geo+json", "href": f"{url}/search", "method": "GET"},
                 {"rel": "search", "type": "application/geo+json", "href": f"{url}/search", "method": "POST"}]
        links += [{"rel": "child", "type": "application/json", "href": f"{url}/collections/{c}"} for c in collections]
        return {"type": "Catalog", "id": profile.name, "title": profile.title, "stac_version": "1.0.0",
                "description": f"replay of {profile.title} (recorded items)", "conformsTo": list(profile.conforms),
                "links": links}

    def _collection(self, cid: str) -> dict[str, Any]:
        url = self.server.url
        items = [i for i in self.server.items if item_collection(i) == cid]
        bounds = [shape(i["geometry"]).bounds for i in items if i.get("geometry")]
        times = [t for i in items for t in _item_times(i)]
        bbox = [min(b[0] for b in bounds), min(b[1] for b in bounds), max(b[2] for b in bounds),
                max(b[3] for b in bounds)] if bounds else [-180, -90, 180, 90]
        return {"type": "Collection", "id": cid, "stac_version": "1.0.0", "license": "proprietary",
                "description": f"{cid} (replayed)",
                "extent": {"spatial": {"bbox": [bbox]},
                           "temporal": {"interval": [[min(times).isoformat(), max(times).isoformat()]]}},
                "links": [{"rel": "self", "href": f"{url}/collections/{cid}"}, {"rel": "root", "href": url},
                          {"rel": "items", "href": f"{url}/collections/{cid}/items"}]}

    def _search(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        profile, url = self.server.profile, self.server.url
        search = parse_search(params, profile)
        matched = [i for i in self.server.items if search.matches(i)]
        start = 0
        if search.token is not None:
            last = search.token.removeprefix("next:").split(",")[1 if profile.paging == "next" else 0]
            ids = [i["id"] for i in matched]
            if last not in ids:
                raise BadRequest(f"invalid paging token {search.token!r}")
            start = ids.index(last) + 1
        page = matched[start:start + search.limit]
        links: list[dict[str, Any]] = []
        if start + search.limit < len(matched):
            links.append(self._next_link(method, params, page[-1]))
        links += [{"rel": "root", "type": "application/json", "href": f"{url}/"},
                  {"rel": "self", "type": "application/json", "href": f"{url}/search"}]
        answer: dict[str, Any] = {"type": "FeatureCollection", "features": page, "links": links}
        if profile.counts:
            answer.update(numberMatched=len(matched), numberReturned=len(page))
        return answer

    def _next_link(self, method: str, params: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
        profile, url = self.server.profile, self.server.url
        if profile.paging == "next":
            key, token = "next", f"{last['properties'].get('datetime')},{last['id']},{item_collection(last)}"
        else:
            key, token = "token", f"next:{last['id']}"
        rest = {k: v for k, v in params.items() if k not in ("next", "token")}
        link: dict[str, Any] = {"rel": "next", "type": "application/geo+json"}
        if method == "POST":
            link.update(method="POST", href=f"{url}/search", body={**rest, key: token})
            if profile.paging == "next":
                link["merge"] = False
        else:
            link.update(method="GET", href=f"{url}/search?{urlencode({**rest, key: token})}")
        return link

    def _error(self, code: int, name: str, description: str, *, allow: str | None = None) -> None:
        self._send(code, {"code": name, "description": description}, allow=allow)

    def _send(self, code: int, doc: dict[str, Any], *, kind: str = "application/json",
              allow: str | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(body)


class ReplayServer:
    """Handle on a running replay: ``url`` and ``requests`` (what clients asked, oldest first)."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.url = server.url

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._server.lock:
            return list(self._server.log)

    def searches(self) -> list[dict[str, Any]]:
        """The parameters (GET) or bodies (POST) of the ``/search`` requests so far."""
        return [r["params"] for r in self.requests if r["path"].rstrip("/") == "/search"]


@contextmanager
def replay(items: Sequence[dict[str, Any]], profile: str) -> Iterator[ReplayServer]:
    """Serve ``items`` as the catalog ``profile`` (a key of :data:`PROFILES`) would, until the block ends."""
    server = _Server(items, PROFILES[profile])
    thread = threading.Thread(target=server.serve_forever, name=f"replay-{profile}", daemon=True)
    thread.start()
    try:
        yield ReplayServer(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
