"""Scene search against a STAC API: the only module that talks to one.

``catalog`` is ``"local"`` (the embedded API of :mod:`cropcore.stac.server`), ``"earth-search"``
(Element84 v1), ``"planetary-computer"`` (hrefs signed with the planetary-computer package) or the URL of
any STAC API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pystac
import requests
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from cropcore.aoi import AOI, AOILike
from cropcore.dates import DateLike, normalize_daterange, to_stac_interval
from cropcore.errors import CatalogUnavailableError, ConfigError, NoItemsFoundError


@dataclass(frozen=True)
class CatalogSpec:
    """A named STAC API and its default Sentinel-2 L2A collections."""

    url: str
    collections: tuple[str, ...]
    sign: Callable[[Any], Any] | None = None
    start_hint: str = ""  # how to start the server, added when it cannot be reached


def _local_url() -> str:
    from cropcore.stac.server import api_url

    return api_url()


def _pc_sign(obj: Any) -> Any:
    import planetary_computer

    return planetary_computer.sign_inplace(obj)


LOCAL_COLLECTIONS = ("worldcereal-s2-l2a-monthly", "ftw-s2-l2a")


def resolve_catalog(catalog: str) -> CatalogSpec:
    """Turn a catalog name or URL into a :class:`CatalogSpec`."""
    if catalog == "local":
        return CatalogSpec(_local_url(), LOCAL_COLLECTIONS,
                           start_hint="start the embedded catalog with `python -m cropcore catalog serve`")
    if catalog == "earth-search":
        return CatalogSpec("https://earth-search.aws.element84.com/v1", ("sentinel-2-l2a",))
    if catalog == "planetary-computer":
        return CatalogSpec("https://planetarycomputer.microsoft.com/api/stac/v1", ("sentinel-2-l2a",), _pc_sign)
    if catalog.startswith(("http://", "https://")):
        return CatalogSpec(catalog.rstrip("/"), ())
    raise ConfigError(f"unknown catalog {catalog!r}: use local, earth-search, planetary-computer or a URL")


CATALOG_NAMES = ("local", "earth-search", "planetary-computer")


def open_client(spec: CatalogSpec, *, timeout: float = 10.0, retries: int = 3) -> Client:
    """Open a pystac-client Client with timeouts and retries (backoff on 429/5xx and connect errors)."""
    retry = Retry(total=retries, connect=retries, read=retries, backoff_factor=0.3,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None, raise_on_status=False)
    stac_io = StacApiIO(timeout=timeout, max_retries=retry)
    try:
        return Client.open(spec.url, stac_io=stac_io, modifier=spec.sign, timeout=timeout)
    except (APIError, requests.RequestException, pystac.STACError, ValueError) as exc:
        raise _unavailable(spec, exc) from exc


def _unavailable(spec: CatalogSpec, exc: BaseException) -> CatalogUnavailableError:
    """The error for a failed request, telling how to start the server where we know how."""
    reason = _reason(exc)
    if spec.start_hint and reason.startswith("cannot connect"):
        reason = f"cannot connect: {spec.start_hint}"
    return CatalogUnavailableError(spec.url, reason)


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
    catalog: str = "local",
    page_size: int = 100,
    timeout: float = 10.0,
    retries: int = 3,
) -> SearchResult:
    """Search Sentinel-2 scenes intersecting ``aoi`` in ``datetime``, sorted by date.

    ``max_cloud`` (percent) is sent as a CQL2 filter when the server conforms, else as a ``query``, else
    applied here. Raises :class:`NoItemsFoundError` when nothing matches and
    :class:`CatalogUnavailableError` when the API cannot be reached or fails.
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
