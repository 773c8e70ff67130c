"""Leaflet, leaflet.draw and the other map assets, served locally instead of from CDNs.

folium and its plugins name their JavaScript/CSS by CDN URL; offline those never load and the map stays an
empty frame. The ``folium-offline`` package carries the same files as Python strings keyed by those URLs.
:func:`localize` writes the files a map needs into the app's static folder (served by Streamlit at
``/app/static/`` when ``server.enableStaticServing`` is on) and points the map's elements at them.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from branca.element import Element
from folium.elements import JSCSSMixin

from cropcore.errors import ConfigError

#: Sub-folder of the static folder that holds the generated files (git-ignored).
VENDOR_DIR = "vendor"


def _resources() -> dict[str, str]:
    """CDN URL -> file content, as shipped by folium-offline."""
    from offlinefolium.elements import _res

    return _res


def asset_name(url: str) -> str:
    """A stable, collision-free file name for a CDN URL (``<hash>-<basename>``)."""
    base = PurePosixPath(urlparse(url).path).name or "asset"
    if not base.endswith((".js", ".css")):
        base += ".css" if ".css" in url else ".js"
    return f"{hashlib.sha1(url.encode()).hexdigest()[:10]}-{base}"


def write_asset(url: str, static_dir: Path) -> str:
    """Write the file behind ``url`` into ``static_dir/vendor`` (if missing); return its relative path."""
    resources = _resources()
    if url not in resources:
        raise ConfigError(f"no offline copy of {url}: this map element cannot be shown without internet")
    rel = f"{VENDOR_DIR}/{asset_name(url)}"
    target = static_dir / rel
    data = resources[url].encode()
    if not target.exists() or target.stat().st_size != len(data):
        target.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name, then an atomic rename: concurrent sessions never see half a file.
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as tmp:
            tmp.write(data)
        Path(tmp.name).replace(target)
    return rel


def _walk(element: Element) -> Iterator[Element]:
    yield element
    for child in element._children.values():
        yield from _walk(child)


def localize(element: Element, static_dir: Path, base_url: str) -> list[str]:
    """Point every JS/CSS link of ``element`` and its children at local copies; return the local URLs.

    ``base_url`` is where ``static_dir`` is served, e.g. ``/app/static/``. Links already local are kept.
    """
    local: list[str] = []
    for elem in _walk(element):
        if not isinstance(elem, JSCSSMixin):
            continue
        for attr in ("default_js", "default_css"):
            links = []
            for name, url in getattr(elem, attr):
                if url.startswith(("http://", "https://")):
                    url = base_url + write_asset(url, static_dir)
                links.append((name, url))
                local.append(url)
            setattr(elem, attr, links)  # instance attribute: the class defaults stay untouched
    return local
