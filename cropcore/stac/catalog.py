"""Scene search against a STAC API: the only module that talks to one.

``catalog`` is ``"local"`` (the embedded API of :mod:`cropcore.stac.server`), ``"earth-search"``
(Element84 v1), ``"planetary-computer"`` (hrefs signed with the planetary-computer package),
``"copernicus"`` (Copernicus Data Space Ecosystem; its assets are JP2 files behind ``s3://eodata`` that
need S3 credentials, see :func:`asset_access`), the URL of any STAC API, or a :class:`CatalogSpec`.

A public catalog that cannot be reached (no internet) is answered within about 10 s: one connection try
of at most :data:`CONNECT_TIMEOUT` seconds and one retry, and a message saying that the embedded catalog
works offline.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pystac
import requests
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NameResolutionError, NewConnectionError, ProxyError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from cropcore import settings
from cropcore.aoi import AOI, AOILike
from cropcore.dates import DateLike, normalize_daterange, to_stac_interval
from cropcore.errors import CatalogUnavailableError, ConfigError, NoItemsFoundError

#: Seconds to wait for a connection to a STAC API (the answer itself may take ``timeout``).
CONNECT_TIMEOUT = 2.5


class _QuietRetries(logging.Filter):
    """Drop urllib3's warning at each retry (the final error says what failed); ``--verbose`` keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Retrying (") or logging.getLogger().isEnabledFor(logging.DEBUG)


logging.getLogger("urllib3.connectionpool").addFilter(_QuietRetries())

#: What a public catalog that cannot be reached answers with, after the reason.
OFFLINE_HINT = "check the internet connection; the embedded catalog works offline: --catalog local"


@dataclass(frozen=True)
class CatalogSpec:
    """A named STAC API and its default Sentinel-2 L2A collections."""

    url: str
    collections: tuple[str, ...]
    sign: Callable[[Any], Any] | None = None
    start_hint: str = ""  # how to start the server, added when it cannot be reached
    public: bool = False  # a catalog on the internet: when unreachable, say that the embedded one works offline


def _local_url() -> str:
    from cropcore.stac.server import api_url

    return api_url()


def _pc_sign(obj: Any) -> Any:
    import planetary_computer

    return planetary_computer.sign_inplace(obj)


LOCAL_COLLECTIONS = ("worldcereal-s2-l2a-monthly", "ftw-s2-l2a", "user-s2")
EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
COPERNICUS_URL = "https://stac.dataspace.copernicus.eu/v1"


def resolve_catalog(catalog: str | CatalogSpec) -> CatalogSpec:
    """Turn a catalog name or URL into a :class:`CatalogSpec` (a spec is returned as it is)."""
    if isinstance(catalog, CatalogSpec):
        return catalog
    if catalog == "local":
        return CatalogSpec(_local_url(), LOCAL_COLLECTIONS,
                           start_hint="start the embedded catalog with `python -m cropcore catalog serve`")
    if catalog == "earth-search":
        return CatalogSpec(EARTH_SEARCH_URL, ("sentinel-2-l2a",), public=True)
    if catalog == "planetary-computer":
        return CatalogSpec(PLANETARY_COMPUTER_URL, ("sentinel-2-l2a",), _pc_sign, public=True)
    if catalog == "copernicus":
        return CatalogSpec(COPERNICUS_URL, ("sentinel-2-l2a",), public=True)
    if catalog.startswith(("http://", "https://")):
        return CatalogSpec(catalog.rstrip("/"), ())
    raise ConfigError(f"unknown catalog {catalog!r}: use {', '.join(CATALOG_NAMES)} or a URL")


CATALOG_NAMES = ("local", "earth-search", "planetary-computer", "copernicus")


def asset_access(items: Sequence[pystac.Item]) -> dict[str, str]:
    """GDAL options needed to read these items' assets: ``{}``, or the S3 settings for ``s3://eodata``.

    Copernicus Data Space assets are JP2 files in its ``eodata`` S3 store; reading them needs the user's
    CDSE S3 keys (:func:`cropcore.settings.cdse_s3_options`, which raises a :class:`ConfigError` naming
    the missing environment variables). Pass the result to ``rasterio.Env`` around the reads.
    """
    if any(a.href.startswith("s3://eodata/") for item in items for a in item.assets.values()):
        return settings.cdse_s3_options()
    return {}


def open_client(spec: CatalogSpec, *, timeout: float = 10.0, retries: int = 3) -> Client:
    """Open a pystac-client Client with timeouts and retries (backoff on 429/5xx and connect errors).

    A connection waits at most :data:`CONNECT_TIMEOUT` seconds (or ``timeout`` if shorter) and a failed
    connection is tried once more at most, so an unreachable catalog is known within about 10 s; an
    answer may take ``timeout`` seconds and failed answers are retried ``retries`` times.
    """
    retry = Retry(total=retries, connect=min(retries, 1), read=retries, backoff_factor=0.3,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None, raise_on_status=False)
    timeouts = (min(CONNECT_TIMEOUT, timeout), timeout)
    stac_io = StacApiIO(timeout=timeouts, max_retries=retry)
    try:
        return Client.open(spec.url, stac_io=stac_io, modifier=spec.sign, timeout=timeouts)
    except (APIError, requests.RequestException, pystac.STACError, ValueError) as exc:
        raise _unavailable(spec, exc) from exc


def _unavailable(spec: CatalogSpec, exc: BaseException) -> CatalogUnavailableError:
    """The error for a failed request, telling how to start the server where we know how."""
    reason = _reason(exc)
    unreachable = _no_connection(exc)
    if spec.public and unreachable:
        reason = f"cannot reach {spec.url} ({unreachable}): {OFFLINE_HINT}"
    elif spec.start_hint and reason.startswith("cannot connect"):
        reason = f"cannot connect: {spec.start_hint}"
    return CatalogUnavailableError(spec.url, reason)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and the errors urllib3 wrapped inside them."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        todo += [err.__cause__, err.__context__, getattr(err, "reason", None), getattr(err, "original_error", None)]
        todo += [a for a in err.args if isinstance(a, BaseException)]


def _no_connection(exc: BaseException) -> str | None:
    """Why no connection could be made (name, refused, unreachable, connect time-out, proxy), or None."""
    errors = list(_chain(exc))
    for err in errors:
        if isinstance(err, NameResolutionError):
            return "its name does not resolve"
    for err in errors:
        if isinstance(err, NewConnectionError):
            code = getattr(err.__cause__ or err.__context__, "errno", None)
            if code == errno.ECONNREFUSED:
                return "connection refused"
            if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                return "network unreachable"
            return "no connection"
        if isinstance(err, requests.ConnectTimeout | ConnectTimeoutError):
            return "the connection timed out"
    if any(isinstance(err, ProxyError | requests.exceptions.ProxyError) for err in errors):
        return "the proxy cannot be reached"
    return None


def _reason(exc: BaseException) -> str:
    """A one-line reason: time-outs, connection failures, HTTP errors and malformed answers by name."""
    chain: BaseException | None = exc
    while chain is not None:
        retried = chain.args[0].reason if chain.args and isinstance(chain.args[0], MaxRetryError) else None
        # urllib3's NewConnectionError (refused) subclasses its ConnectTimeoutError
        timed_out = isinstance(retried, Urllib3Timeout) and not isinstance(retried, NewConnectionError)
        if isinstance(chain, requests.Timeout) or timed_out:
            return "no answer within the timeout: try again later, or use another catalog"
        if isinstance(chain, requests.ConnectionError):
            return "cannot connect: is the server running and reachable?"
        if isinstance(chain, json.JSONDecodeError):
            return f"the answer is not valid JSON ({chain.msg}): the server is misbehaving; try again later"
        chain = chain.__cause__ or chain.__context__
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    status = getattr(exc, "status_code", None)
    if status is not None:
        return f"it answered HTTP {status} ({text}): try again later, or use another catalog"
    return text


@dataclass(frozen=True)
class SearchResult:
    """Found scenes as a pystac ItemCollection and a tidy table."""

    items: pystac.ItemCollection
    table: pd.DataFrame
    url: str


def items_table(items: Sequence[pystac.Item]) -> pd.DataFrame:
    """One row per item: id, datetime, cloud cover, tile, platform, collection, quicklook href."""
    rows = []
    for item in items:
        props = item.properties
        tile = props.get("s2:mgrs_tile") or str(props.get("grid:code", "")).removeprefix("MGRS-") or None
        rows.append({
            "id": item.id,
            "datetime": pd.Timestamp(item.datetime or props.get("start_datetime")),
            "cloud_cover": props.get("eo:cloud_cover"),
            "tile": tile,
            "platform": props.get("platform") or props.get("constellation"),
            "collection": item.collection_id,
            "quicklook": next((a.href for k, a in item.assets.items() if "thumbnail" in (a.roles or []) or
                               k in ("thumbnail", "rendered_preview")), None),
        })
    columns = ["id", "datetime", "cloud_cover", "tile", "platform", "collection", "quicklook"]
    return pd.DataFrame(rows, columns=columns)


def _cloud_params(client: Client, max_cloud: float | None) -> tuple[dict[str, Any], bool]:
    """Search keywords for the cloud filter, and whether it must be applied on the client instead."""
    if max_cloud is None:
        return {}, False
    if client.conforms_to(ConformanceClasses.FILTER):
        expr = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_cloud]}
        return {"filter": expr, "filter_lang": "cql2-json"}, False
    if client.conforms_to(ConformanceClasses.QUERY):
        return {"query": {"eo:cloud_cover": {"lte": max_cloud}}}, False
    return {}, True


def search_items(
    aoi: AOILike,
    datetime: str | Sequence[DateLike] | DateLike,
    *,
    collections: Sequence[str] | None = None,
    max_cloud: float | None = None,
    limit: int = 500,
    catalog: str | CatalogSpec = "local",
    page_size: int = 100,
    timeout: float = 10.0,
    retries: int = 3,
) -> SearchResult:
    """Search Sentinel-2 scenes intersecting ``aoi`` in ``datetime``, sorted by date.

    ``max_cloud`` (percent) is sent as a CQL2 filter when the server conforms, else as a ``query``, else
    applied here. ``catalog``: a name, a URL or a :class:`CatalogSpec` (e.g. with another ``sign``
    function). Raises :class:`NoItemsFoundError` when nothing matches and :class:`CatalogUnavailableError`
    when the API cannot be reached or fails.
    """
    geom = AOI.parse(aoi).geometry
    interval = to_stac_interval(*normalize_daterange(datetime))
    if max_cloud is not None and not 0 <= max_cloud <= 100:
        raise ConfigError(f"max_cloud is a percentage in [0, 100], got {max_cloud}")
    if limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    spec = resolve_catalog(catalog)
    client = open_client(spec, timeout=timeout, retries=retries)
    cloud_kw, client_side = _cloud_params(client, max_cloud)
    search = client.search(
        intersects=geom.__geo_interface__, datetime=interval, collections=list(collections or spec.collections)
        or None, max_items=limit, limit=min(page_size, limit), **cloud_kw,
    )
    try:
        found = list(search.items())
    except (APIError, requests.RequestException, pystac.STACError, ValueError) as exc:
        raise _unavailable(spec, exc) from exc
    if client_side:
        found = [i for i in found if i.properties.get("eo:cloud_cover", 100.0) <= max_cloud]
    found.sort(key=lambda i: (i.datetime or pd.Timestamp(i.properties["start_datetime"]).to_pydatetime(), i.id))
    if not found:
        cloud = f" with at most {max_cloud:g}% cloud" if max_cloud is not None else ""
        raise NoItemsFoundError(
            f"no scenes{cloud} in {interval} over the AOI at {spec.url}: widen the dates, raise the cloud "
            "limit or move the AOI"
        )
    return SearchResult(pystac.ItemCollection(found), items_table(found), spec.url)
