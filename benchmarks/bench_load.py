"""Time and peak memory of load + composite for AOIs of growing area.

Usage: ``python benchmarks/bench_load.py [--base 512] [--scales 1 4 16] [--chunk 512] [--chunk-only]
[--out benchmarks/results/load_cpu.json]``.

Generates, in a temporary folder, 4 dates x 4 bands (B02, B03, B04, B08) of seeded synthetic uint16
Sentinel-2-like COGs (10 m, EPSG:32633) large enough for the largest AOI, and static pystac Items for them.
For each scale s the AOI is a square of ``base * sqrt(s)`` pixels a side; a fresh subprocess runs
``load_cube -> preprocess (monthly median composite + gap filling)`` and streams the result to a GeoTIFF
on disk with ``dask.array.store``, while a thread samples the process RSS every 5 ms. Peak memory is
reported as the absolute RSS peak and as the rise above the RSS just before computing. GDAL's block cache
is a process-wide cache sized by ``GDAL_CACHEMAX`` (default 5 % of RAM); it is set to ``--gdal-cache`` MB
so that memory stays bounded by the dask chunks rather than by how much of the file GDAL keeps.

Per chunk, in one further fresh process: 24 dates (two a month) x 9 bands + SCL of seeded COGs, four
``--chunk`` x ``--chunk`` px windows that share no COG block (each read once, so GDAL's cache never serves a
repeat). For each window: *decode*, computing the DN chunk (reading the COG windows); *preprocess*, the
monthly composite and gap filling of that DN chunk already in memory (no reading); *both*, the DN chunk read and
preprocessed in one graph, as a map run gets it. Results stay dask chunks (``persist``: no concatenation into one
array, which would add a copy to every figure). Each after a warm-up (imports, numba compilation) on a small
window; dask threaded scheduler on every core; the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import dask.array as da

DATES = ("2021-05-03", "2021-05-18", "2021-06-02", "2021-06-17")
BANDS = ("B02", "B03", "B04", "B08")
#: The per-chunk measurement: a year of two acquisitions a month, the bands AgrUNet reads, and SCL.
CHUNK_DATES = tuple(f"2021-{m:02d}-{d:02d}" for m in range(1, 13) for d in (5, 20))
CHUNK_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
#: SCL classes drawn for the synthetic scene classification (mostly vegetation and soil, some cloud and shadow).
SCL_CLASSES, SCL_WEIGHTS = (3, 4, 5, 8, 9, 10), (0.05, 0.45, 0.25, 0.1, 0.1, 0.05)
CRS = "EPSG:32633"
ORIGIN = (400000.0, 5400000.0)  # upper-left corner, metres
RES = 10.0


def make_cogs(
    folder: Path, side: int, *, seed: int = 0, dates: Sequence[str] = DATES, bands: Sequence[str] = BANDS,
    scl: bool = False,
) -> list[dict]:
    """Write the synthetic COGs (and an SCL band of random classes with ``scl``); return pystac Item dicts."""
    import pystac
    import rasterio
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension
    from rasterio.transform import from_origin
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping, shape

    rng = np.random.default_rng(seed)
    transform = from_origin(*ORIGIN, RES, RES)
    west, north = ORIGIN
    footprint = transform_geom(CRS, "EPSG:4326", mapping(box(west, north - side * RES, west + side * RES, north)))
    # smooth fields: a coarse random pattern upsampled, plus noise; about 1 % no-data (0)
    coarse = rng.integers(300, 4000, size=(len(dates), len(bands), side // 64 + 1, side // 64 + 1))
    items = []
    for t, date in enumerate(dates):
        item = pystac.Item(f"synthetic-{date}", footprint, list(shape(footprint).bounds),
                           datetime.fromisoformat(date).replace(hour=10, tzinfo=UTC), {})
        ProjectionExtension.ext(item, add_if_missing=True).apply(
            code=CRS, shape=[side, side], transform=list(transform)[:6])
        RasterExtension.add_to(item)
        for b, band in enumerate([*bands, *(["SCL"] if scl else [])]):
            if band == "SCL":
                data = rng.choice(np.array(SCL_CLASSES, "uint8"), size=(side, side), p=SCL_WEIGHTS)
            else:
                data = np.kron(coarse[t, b], np.ones((64, 64), dtype="int64"))[:side, :side]
                data = (data + rng.integers(-150, 150, size=(side, side))).clip(1, 10000).astype("uint16")
                data[rng.random((side, side)) < 0.01] = 0
            path = folder / f"{date}_{band}.tif"
            with rasterio.open(path, "w", driver="COG", width=side, height=side, count=1, dtype=data.dtype,
                               crs=CRS, transform=transform, nodata=0, compress="deflate",
                               blocksize=256) as dst:
                dst.write(data, 1)
            asset = pystac.Asset(path.resolve().as_uri(), media_type=pystac.MediaType.COG, roles=["data"])
            item.add_asset(band, asset)
            kind = DataType.UINT8 if band == "SCL" else DataType.UINT16
            RasterExtension.ext(asset).bands = [RasterBand.create(nodata=0, data_type=kind)]
        items.append(item.to_dict())
    return items


def aoi_for(side_px: int, extent_px: int) -> dict:
    """A lon/lat square of ``side_px`` pixels centred in the generated extent (a few pixels inset)."""
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping

    west, north = ORIGIN
    cx, cy = west + extent_px * RES / 2, north - extent_px * RES / 2
    half = side_px * RES / 2
    return transform_geom(CRS, "EPSG:4326", mapping(box(cx - half, cy - half, cx + half, cy + half)))


class RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        super().__init__(daemon=True)
        self._proc = psutil.Process()
        self._interval = interval
        self._stop_event = threading.Event()
        self.peak = self._proc.memory_info().rss

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, self._proc.memory_info().rss)


class _TiffTarget:
    """``dask.array.store`` target writing (time, band, y, x) blocks into one multi-band GeoTIFF."""

    def __init__(self, dst: object, nbands: int) -> None:
        self._dst = dst
        self._nbands = nbands

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        from rasterio.windows import Window

        ts, bs, ys, xs = key
        window = Window(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
        for i, t in enumerate(range(ts.start, ts.stop)):
            for j, b in enumerate(range(bs.start, bs.stop)):
                self._dst.write(value[i, j], t * self._nbands + b + 1, window=window)


def run_one(items_json: Path, aoi: dict, chunk: int, out_tif: Path) -> dict:
    """One measurement, in this (fresh) process."""
    import dask
    import dask.array as da
    import pystac
    import rasterio

    from cropcore.cube.load import load_cube
    from cropcore.cube.preprocess import preprocess

    items = [pystac.Item.from_dict(d) for d in json.loads(items_json.read_text())]
    t0 = time.perf_counter()
    result = load_cube(items, list(BANDS), aoi=aoi, crs=CRS, chunks={"time": 1, "x": chunk, "y": chunk})
    cube = preprocess(result.cube, freq="monthly")
    t_graph = time.perf_counter() - t0
    nt, nb, ny, nx = cube.shape
    sampler = RssSampler()
    rss_before = sampler.peak
    sampler.start()
    t1 = time.perf_counter()
    profile = {"driver": "GTiff", "width": nx, "height": ny, "count": nt * nb, "dtype": "float32",
               "tiled": True, "blockxsize": 256, "blockysize": 256, "crs": CRS,
               "transform": result.cube.odc.geobox.transform}
    with rasterio.open(out_tif, "w", **profile) as dst, dask.config.set(scheduler="threads"):
        da.store(cube.data, _TiffTarget(dst, nb), lock=True)
    t_compute = time.perf_counter() - t1
    peak = sampler.stop()
    return {
        "pixels": nx * ny, "shape": [nt, nb, ny, nx], "area_km2": nx * ny * RES * RES / 1e6,
        "chunks": [list(c) for c in cube.chunks], "failures": len(result.failures),
        "graph_s": round(t_graph, 3), "compute_s": round(t_compute, 3), "total_s": round(t_graph + t_compute, 3),
        "rss_before_mb": round(rss_before / 2**20, 1), "rss_peak_mb": round(peak / 2**20, 1),
        "rss_rise_mb": round((peak - rss_before) / 2**20, 1),
    }


def _timed(array: da.Array) -> tuple[float, da.Array]:
    """Seconds to compute the chunks of ``array`` (dask threads, kept as chunks: no concatenation), and them."""
    t0 = time.perf_counter()
    done = array.persist(scheduler="threads")
    return time.perf_counter() - t0, done


def chunk_one(items_json: Path, extent: int, chunk: int) -> dict:
    """Decoding vs preprocessing of the same chunks, in this (fresh) process."""
    import pystac

    from cropcore.cube.load import load_cube
    from cropcore.cube.preprocess import preprocess

    items = [pystac.Item.from_dict(d) for d in json.loads(items_json.read_text())]
    load_before = os.getloadavg()

    def cube_at(x0: int, y0: int, side: int):  # the DN cube of one window (2 px inset), one chunk in space
        west, north = ORIGIN[0] + x0 * RES, ORIGIN[1] - y0 * RES
        box = (west + 2 * RES, north - (side - 2) * RES, west + (side - 2) * RES, north - 2 * RES)
        return load_cube(items, [*CHUNK_BANDS, "SCL"], aoi=_lonlat(box), crs=CRS, resampling="nearest",
                         chunks={"time": 1, "x": side, "y": side}, check=False).cube

    _timed(preprocess(cube_at(0, 0, 64)).data)  # warm-up: imports, numba compilation, odc-stac set-up
    rows = []
    for y0 in range(0, extent - chunk + 1, chunk):
        for x0 in range(0, extent - chunk + 1, chunk):
            cube = cube_at(x0, y0, chunk)
            decode, dn = _timed(cube.data)
            prep, _ = _timed(preprocess(cube.copy(data=dn)).data)
            both, _ = _timed(preprocess(cube_at(x0, y0, chunk)).data)
            rows.append({"window": [x0, y0], "shape": list(dn.shape), "decode_s": round(decode, 3),
                         "preprocess_s": round(prep, 3), "both_s": round(both, 3)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    med = {k: float(np.median([r[k] for r in rows])) for k in ("decode_s", "preprocess_s", "both_s")}
    return {"windows": rows, "median": med, "preprocess_over_decode": round(med["preprocess_s"] / med["decode_s"], 3),
            "both_over_decode": round(med["both_s"] / med["decode_s"], 3), "loadavg_before": load_before,
            "loadavg_after": os.getloadavg()}


def _lonlat(box: tuple[float, float, float, float]) -> dict:
    from rasterio.warp import transform_geom
    from shapely.geometry import box as make_box
    from shapely.geometry import mapping

    return transform_geom(CRS, "EPSG:4326", mapping(make_box(*box)))


def run_chunks(folder: Path, chunk: int, env: dict) -> dict:
    """Generate the per-chunk COGs and measure them in a fresh process."""
    extent = 2 * chunk
    items_json = folder / "chunk_items.json"
    sub = folder / "chunk"
    sub.mkdir()
    items_json.write_text(json.dumps(make_cogs(sub, extent, seed=1, dates=CHUNK_DATES, bands=CHUNK_BANDS, scl=True)))
    cmd = [sys.executable, __file__, "--chunk-one", str(items_json), str(extent), str(chunk)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"chunk measurement failed:\n{proc.stderr}")
    return {"dates": len(CHUNK_DATES), "bands": [*CHUNK_BANDS, "SCL"], "chunk_px": chunk,
            **json.loads(proc.stdout.strip().splitlines()[-1])}


def _scale_runs(folder: Path, args: argparse.Namespace, env: dict) -> list[dict]:
    """The area series: one fresh process per scale."""
    extent = math.ceil(args.base * math.sqrt(max(args.scales))) + 64
    t0 = time.perf_counter()
    items_json = folder / "items.json"
    items_json.write_text(json.dumps(make_cogs(folder, extent)))
    print(f"generated {len(DATES)} dates x {len(BANDS)} bands of {extent} x {extent} px COGs "
          f"in {time.perf_counter() - t0:.1f} s")
    runs = []
    for scale in args.scales:
        side = round(args.base * math.sqrt(scale))
        cmd = [sys.executable, __file__, "--one", str(items_json), json.dumps(aoi_for(side, extent)),
               str(args.chunk), str(folder / f"out_{scale}.tif")]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            sys.exit(f"scale {scale} failed:\n{proc.stderr}")
        run = {"scale": scale, **json.loads(proc.stdout.strip().splitlines()[-1])}
        runs.append(run)
        print(f"scale {scale:>3}: {run['shape']} {run['total_s']:.2f} s, peak RSS {run['rss_peak_mb']:.0f} MB")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=512, help="AOI side in pixels at scale 1")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--chunk", type=int, default=512, help="dask chunk side in pixels")
    parser.add_argument("--gdal-cache", type=int, default=64, help="GDAL_CACHEMAX in MB")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/load_cpu.json"))
    parser.add_argument("--chunk-only", action="store_true", help="only the per-chunk decode vs preprocess rows")
    parser.add_argument("--one", nargs=4, metavar=("ITEMS", "AOI", "CHUNK", "TIF"), help=argparse.SUPPRESS)
    parser.add_argument("--chunk-one", nargs=3, metavar=("ITEMS", "EXTENT", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chunk_one:
        items, extent, chunk = args.chunk_one
        print(json.dumps(chunk_one(Path(items), int(extent), int(chunk))))
        return
    if args.one:
        items, aoi, chunk, tif = args.one
        print(json.dumps(run_one(Path(items), json.loads(aoi), int(chunk), Path(tif))))
        return

    root = str(Path(__file__).resolve().parents[1])  # the subprocesses import cropcore from this checkout
    pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, GDAL_CACHEMAX=str(args.gdal_cache), PYTHONPATH=pythonpath)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        chunk = run_chunks(folder, args.chunk, env)
        print(f"per chunk (median of {len(chunk['windows'])} windows {chunk['windows'][0]['shape']}): decode "
              f"{chunk['median']['decode_s']:.3f} s, preprocess {chunk['median']['preprocess_s']:.3f} s "
              f"({chunk['preprocess_over_decode']:.2f}x decode), both {chunk['median']['both_s']:.3f} s "
              f"({chunk['both_over_decode']:.2f}x decode); load average {chunk['loadavg_before'][0]:.2f} before, "
              f"{chunk['loadavg_after'][0]:.2f} after")
        if not args.chunk_only:
            runs = _scale_runs(folder, args, env)
    result = {
        "benchmark": "load_cube + preprocess (monthly median composite, gap fill) streamed to GeoTIFF",
        "dates": len(DATES), "bands": list(BANDS), "chunk_px": args.chunk, "gdal_cachemax_mb": args.gdal_cache,
        "scheduler": "dask threads", "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "runs": runs, "per_chunk": chunk,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if runs:
        first = runs[0]
        print("\n| scale | AOI px | area km² | time s | s per Mpx | peak RSS MB | rise MB | peak vs 1x |")
        print("|---|---|---|---|---|---|---|---|")
        for run in runs:
            per_mpx = run["total_s"] / (run["pixels"] / 1e6)
            print(f"| {run['scale']} | {run['shape'][3]}x{run['shape'][2]} | {run['area_km2']:.1f} | "
                  f"{run['total_s']:.2f} | {per_mpx:.2f} | {run['rss_peak_mb']:.0f} | {run['rss_rise_mb']:.0f} | "
                  f"{run['rss_peak_mb'] / first['rss_peak_mb']:.2f} |")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
