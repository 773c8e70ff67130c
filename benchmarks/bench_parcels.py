"""Parcel statistics benchmark: time and peak memory of ``parcel_stats`` for 1k, 10k and 100k parcels.

Usage: ``python benchmarks/bench_parcels.py [--sizes 1000 10000 100000] [--out benchmarks/results/parcels_cpu.json]``
(or ``python -m cropcore bench parcels``).

Input, generated at run time (seeded): one map of 1920 x 1920 px at 10 m (369 km², EPSG:32631) with random
class blocks, 10 % uncertain pixels, a confidence layer and a 12-month B04/B08 reflectance cube (float32, in
memory, as a run's cube below 256 MB would be); and one GeoPackage per size of parcels on a 6 x 6 px grid
(about 5 x 5 px jittered quadrilaterals, 0.25 ha) written in random order, so every batch spans the whole map
(the worst case for windows). Every 100th parcel is a self-intersecting bowtie (repaired), every 200th is moved
half a cell towards its neighbour (an overlap where that cell holds a parcel), every 250th is smaller
than a pixel and every 500th lies outside the map.

Each size runs in a fresh process: build the map, then ``parcel_stats`` writes GeoPackage + GeoParquet in
batches of 10,000. Memory is measured two ways during that call only: the tracemalloc peak (Python and numpy
allocations; not GDAL's) and the peak RSS sampled every 5 ms (psutil), with the RSS just before the call
(the map and cube) given apart, so the rise is what the parcels cost. Time: wall clock and the process's CPU
time (on a shared machine the wall clock includes waiting for a core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_load import RssSampler

SIDE = 1920  # pixels
CELL = 6  # pixels per grid cell
ORIGIN = (600_000.0, 5_600_000.0)
MONTHS = 12


def make_map(seed: int = 0):
    """The generated map as ``MapLayers`` (classes, confidence, NDVI from a B04/B08 cube)."""
    import pandas as pd
    import xarray as xr

    from cropcore.inference.options import NODATA, UNCERTAIN
    from cropcore.products.parcels import MapLayers

    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 6, (SIDE // 20 + 1, SIDE // 20 + 1)).astype(np.uint8)
    classes = np.repeat(np.repeat(blocks, 20, 0), 20, 1)[:SIDE, :SIDE]
    classes[rng.random((SIDE, SIDE)) < 0.1] = UNCERTAIN
    classes[:, :2] = NODATA
    confidence = rng.uniform(0.3, 1.0, (SIDE, SIDE)).astype("float32")
    coords = {"y": ORIGIN[1] - 5 - 10 * np.arange(SIDE), "x": ORIGIN[0] + 5 + 10 * np.arange(SIDE)}
    prediction = xr.Dataset({"class": (("y", "x"), classes), "confidence": (("y", "x"), confidence)},
                            coords=coords).rio.write_crs(32631)
    cube = np.empty((MONTHS, 2, SIDE, SIDE), dtype="float32")
    for t in range(MONTHS):
        cube[t, 0] = rng.uniform(0.02, 0.2, (SIDE, SIDE))
        cube[t, 1] = rng.uniform(0.1, 0.5, (SIDE, SIDE))
    reflectance = xr.DataArray(cube, dims=("time", "band", "y", "x"), coords={
        "time": pd.date_range("2020-11-01", periods=MONTHS, freq="MS"), "band": ["B04", "B08"], **coords})
    names = ("grassland", "maize", "winter cereals", "sorghum and millet", "oilseeds", "other crops")
    return MapLayers.from_prediction(prediction, reflectance.rio.write_crs(32631), names)


def make_parcels(n: int, path: Path, seed: int = 1) -> None:
    """``n`` parcels on the grid in random order (see the module docstring) as a GeoPackage."""
    import geopandas as gpd
    import shapely

    per_row = SIDE // CELL
    if n > per_row * per_row:
        raise SystemExit(f"{n} parcels do not fit on a {SIDE} px map with {CELL} px cells")
    rng = np.random.default_rng(seed)
    cells = rng.permutation(per_row * per_row)[:n]
    rows, cols = np.divmod(cells, per_row)
    x0 = ORIGIN[0] + 10 * CELL * cols + 5
    y0 = ORIGIN[1] - 10 * CELL * rows - 5
    j = rng.uniform(0, 8, (n, 8))
    size = 10 * (CELL - 1)
    ring = np.stack([np.stack([x0 + j[:, 0], y0 - j[:, 1]], 1), np.stack([x0 + size - j[:, 2], y0 - j[:, 3]], 1),
                     np.stack([x0 + size - j[:, 4], y0 - size + j[:, 5]], 1),
                     np.stack([x0 + j[:, 6], y0 - size + j[:, 7]], 1)], 1)
    index = np.arange(n)
    bowtie = index % 100 == 0
    ring[bowtie] = ring[bowtie][:, [0, 2, 1, 3]]
    shift = index % 200 == 1
    ring[shift, :, 0] += 10 * CELL / 2
    tiny = index % 250 == 2
    ring[tiny] = ring[tiny][:, :1] + (ring[tiny] - ring[tiny][:, :1]) * 0.1
    outside = index % 500 == 3
    ring[outside, :, 0] += 10 * SIDE + 1000
    closed = np.concatenate([ring, ring[:, :1]], 1)
    geoms = shapely.polygons(closed)
    gpd.GeoDataFrame({"field_id": index, "crop_declared": rng.choice(["wheat", "maize", "grass"], n)},
                     geometry=geoms, crs=32631).to_file(path, driver="GPKG", engine="pyogrio")


def run_one(source: Path, out: Path, batch: int) -> dict:
    """Build the map, then time one ``parcel_stats`` call with its memory (see the module docstring)."""
    import psutil

    from cropcore.products.parcels import parcel_stats

    layers = make_map()
    rss_before = psutil.Process().memory_info().rss
    sampler = RssSampler()
    sampler.start()
    tracemalloc.start()
    t0, cpu0 = time.perf_counter(), time.process_time()
    summary = parcel_stats(source, layers, {"gpkg": out / "parcels.gpkg", "parquet": out / "parcels.parquet"},
                           batch_size=batch)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_peak = sampler.stop()
    mb = 2**20
    return {"parcels": summary.total, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "parcels_per_s": round(summary.total / seconds),
            "tracemalloc_peak_mb": round(traced_peak / mb, 1), "rss_before_mb": round(rss_before / mb),
            "rss_peak_mb": round(rss_peak / mb), "rss_rise_mb": round((rss_peak - rss_before) / mb),
            "status": summary.by_status, "repaired": summary.repaired, "overlapping": summary.overlapping,
            "gpkg_mb": round((out / "parcels.gpkg").stat().st_size / mb, 1),
            "parquet_mb": round((out / "parcels.parquet").stat().st_size / mb, 1), "summary": summary.line()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--batch", type=int, default=10_000, help="parcels per batch")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/parcels_cpu.json"))
    parser.add_argument("--one", nargs=2, metavar=("SOURCE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(Path(args.one[0]), Path(args.one[1]), args.batch)))
        return 0
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-parcels-") as folder:
        for n in args.sizes:
            source = Path(folder) / f"parcels_{n}.gpkg"
            make_parcels(n, source)
            out = Path(folder) / f"out_{n}"
            out.mkdir()
            proc = subprocess.run([sys.executable, __file__, "--one", str(source), str(out), "--batch",
                                   str(args.batch)], capture_output=True, text=True, check=True)
            rows.append({"input_mb": round(source.stat().st_size / 2**20, 1),
                         **json.loads(proc.stdout.strip().splitlines()[-1])})
            print(json.dumps(rows[-1]), flush=True)
    result = {"started": started, "machine": {"cpu": platform.processor() or platform.machine(),
                                              "cores": os.cpu_count()},
              "load_average": {"before": load_before, "after": os.getloadavg()[0]},
              "map": {"pixels": [SIDE, SIDE], "resolution_m": 10, "months": MONTHS, "cell_px": CELL},
              "batch": args.batch, "memory": "tracemalloc peak and psutil RSS sampled every 5 ms, during the call",
              "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
