"""Which assets can be read: header checks before loading and a reader that records failed reads.

A missing or corrupt asset never stops a load: :func:`check_assets` opens every asset's header first (in
threads, no pixel read) and the odc-stac driver :class:`RecordingDriver` records any read that fails while the
cube is computed; both report into a :class:`FailureLog`, whose :class:`AssetFailure` entries name the item,
the canonical band and the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from odc.geo.geobox import GeoBox
from odc.loader import RioDriver, RioReader
from odc.loader.types import RasterLoadParams, RasterSource, ReaderSubsetSelection
from odc.stac._mdtools import StacAuxReader  # private: odc-stac's own aux reader, not exported
from rasterio._err import CPLE_BaseError  # private: GDAL's errors, not re-exported by rasterio.errors

from cropcore.progress import Progress

_READ_ERRORS = (rasterio.errors.RasterioError, CPLE_BaseError, OSError)


@dataclass(frozen=True)
class AssetFailure:
    """One asset that could not be read."""

    item_id: str
    asset: str
    reason: str


class FailureLog:
    """Thread-safe record of unreadable assets, keyed by href.

    When a cube is computed by a distributed scheduler the reader runs in other processes; a pickled log
    starts empty there, so read-time failures on remote workers appear only in the worker logs (the
    up-front header check still lists missing and corrupt files).
    """

    def __init__(self, assets: Mapping[str, tuple[str, str]]) -> None:
        self._assets = dict(assets)  # href -> (item id, asset key)
        self._failures: dict[tuple[str, str], AssetFailure] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"_assets": self._assets}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_assets"])

    def record(self, href: str, reason: str) -> None:
        """Note that ``href`` could not be read (the first reason per asset is kept)."""
        item_id, asset = self._assets.get(href, ("?", href))
        self.add(item_id, asset, reason)

    def add(self, item_id: str, asset: str, reason: str) -> None:
        """Note that ``asset`` of item ``item_id`` is unusable (the first reason per asset is kept)."""
        with self._lock:
            self._failures.setdefault((item_id, asset), AssetFailure(item_id, asset, _one_line(reason)))

    def failures(self) -> list[AssetFailure]:
        """The failures recorded so far, sorted by item and asset."""
        with self._lock:
            return sorted(self._failures.values(), key=lambda f: (f.item_id, f.asset))


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text[:300] or "unknown error"


def _reason(exc: BaseException) -> str:
    """The messages of ``exc`` and its causes, deepest first (GDAL puts the detail in the cause)."""
    messages: list[str] = []
    chain: BaseException | None = exc
    while chain is not None and len(messages) < 5:
        text = str(chain).strip()
        if text and text not in messages and not text.startswith("Read failed. See previous"):
            messages.append(text)
        chain = chain.__cause__ or chain.__context__
    return "; ".join(reversed(messages)) or type(exc).__name__


class _RecordingReader(RioReader):
    """odc-stac's rasterio reader that records a failed read instead of raising."""

    def __init__(self, src: RasterSource, ctx: Any, log: FailureLog) -> None:
        super().__init__(src, ctx)
        self._log = log

    def read(
        self,
        cfg: RasterLoadParams,
        dst_geobox: GeoBox,
        *,
        dst: np.ndarray | None = None,
        selection: ReaderSubsetSelection | None = None,
    ) -> tuple[tuple[slice, slice], np.ndarray]:
        try:
            return super().read(replace(cfg, fail_on_error=True), dst_geobox, dst=dst, selection=selection)
        except _READ_ERRORS as exc:
            self._log.record(self._src.uri, _reason(exc))
        # same "nothing read" answer as odc-stac with fail_on_error=False: the chunk keeps its nodata fill
        out = dst[0:0, 0:0] if dst is not None else np.ndarray((0, 0), dtype=cfg.dtype)
        return np.s_[0:0, 0:0], out


class RecordingDriver(RioDriver):
    """odc-stac's rasterio driver whose readers report into a :class:`FailureLog`."""

    def __init__(self, log: FailureLog) -> None:
        super().__init__(aux_reader=StacAuxReader())
        self.log = log

    def open(self, src: RasterSource, ctx: Any) -> _RecordingReader:
        return _RecordingReader(src, ctx, self.log)


def _check_header(href: str, gdal_options: Mapping[str, str] | None = None) -> str | None:
    """Open ``href`` (header only, with these GDAL options); return the reason it cannot be opened, or None."""
    try:
        with rasterio.Env(**(gdal_options or {})), rasterio.open(href) as src:
            if src.count < 1:
                return "the file holds no raster band"
    except _READ_ERRORS as exc:
        return _reason(exc)
    return None


def check_assets(
    hrefs: Mapping[str, tuple[str, str]], log: FailureLog, *, progress: Progress | None = None,
    max_workers: int = 8, gdal_options: Mapping[str, str] | None = None,
) -> None:
    """Open every asset's header (in threads, no pixels read) and record the ones that fail."""
    total = len(hrefs)
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        reasons = pool.map(lambda href: _check_header(href, gdal_options), hrefs)
        for done, (href, reason) in enumerate(zip(hrefs, reasons, strict=True), 1):
            if reason is not None:
                log.record(href, reason)
            if progress is not None:
                progress(done / total, f"checked {done}/{total} assets")
