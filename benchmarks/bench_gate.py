"""The agricultural gate of ``predict --skip-non-agri``: its recall, the share of tiles it skips, the time it saves.

Usage: ``python benchmarks/bench_gate.py [--side 960] [--repeats 1] [--out benchmarks/results/gate_cpu.json]``
(or ``python -m cropcore bench gate``).

1. Recall: not measured here. The recall of the gate on held-out places is the 5-fold cross-validation by place of
   the patch models (``benchmarks/results/patches_cv_*.json``, written by ``cropcore train``): per fold, the
   threshold that kept every agricultural patch of the validation fold, applied to the test fold. Copied as stored.
2. Generated AOI: seeded Sentinel-2-like COGs (``bench_load.make_cogs``: 6 dates, 12 bands, 10 m) for a square
   AOI of ``--side`` pixels. The crop map of the shipped default model (TempCNN), ungated and gated, alternating,
   ``--repeats`` times each (after a warm-up on a 128 px corner), with predict's default 64 px model tiles and with
   120 px tiles that line up with the gate's (only model tiles lying wholly in skipped gate tiles are skipped;
   strips of 512 and 480 px): the season cube is loaded and composited lazily as in ``predict`` (tiles read in
   strips), the gate loads its own 12-band median composite of the June-August scenes and scores its 120 px tiles
   (:mod:`cropcore.patches.gate`). Time saved = ungated (preprocess + model) - gated (gate + preprocess + model).
   **The COGs' content is random**: the share of tiles the gate skips there says nothing about real landscapes;
   what transfers is the gate's cost and how inference time falls with the skipped share.
3. Real demo area: ``pipeline.run`` of the embedded catalog's demo area (WorldCereal composites, Belgium, one
   padded tile) with and without the gate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import aoi_for, make_cogs

RESULTS = Path(__file__).resolve().parent / "results"
DATES = ("2021-04-10", "2021-05-20", "2021-06-14", "2021-07-09", "2021-08-13", "2021-09-22")
ALL_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
CV = {"cnnvit_agri": "patches_cv_cnnvit_agri.json", "smallcnn_agri": "patches_cv_smallcnn_agri.json"}


def recall_rows() -> dict:
    """The gate's held-out recall and skipped share per fold, as the cross-validation stored them."""
    out = {}
    for name, file in CV.items():
        cv = json.loads((RESULTS / file).read_text())
        folds = [f["model"]["gate"] for f in cv["fold_results"]]
        out[name] = {"source": f"benchmarks/results/{file}", "folds": folds, "mean_sd": cv["gate_mean_sd"]}
    return out


def generated(side: int, repeats: int, tile: int) -> dict:
    """Ungated vs gated crop map of a generated AOI of ``side`` x ``side`` px with ``tile`` px model tiles."""
    import pystac

    from cropcore.aoi import AOI
    from cropcore.cube.load import load_cube
    from cropcore.cube.preprocess import preprocess, time_axis
    from cropcore.inference.options import InferenceOptions, cube_chunks
    from cropcore.inference.predict import predict_map
    from cropcore.models import load_checkpoint
    from cropcore.patches.gate import non_agri_gate

    net, meta = load_checkpoint("tempcnn_worldcereal")
    options = InferenceOptions(tile=tile, strip=tile * (512 // tile))
    with tempfile.TemporaryDirectory() as tmp:
        extent = side + 64
        items = [pystac.Item.from_dict(d) for d in make_cogs(Path(tmp), extent, dates=DATES, bands=ALL_BANDS)]
        aoi = AOI.parse(aoi_for(side, extent))
        runs: dict[str, list[dict]] = {"ungated": [], "gated": []}
        maps = {}
        cube = load_cube(items, list(meta.bands), aoi=aoi, chunks=cube_chunks(options)).cube
        warm = preprocess(cube, axis=time_axis("2020-11-01", periods=12)).isel(y=slice(0, 128), x=slice(0, 128))
        predict_map(warm, net, meta=meta, options=options)  # warm-up: numba compilation, first model calls
        for _ in range(repeats):
            for kind in ("ungated", "gated"):
                t0 = time.perf_counter()
                cube = load_cube(items, list(meta.bands), aoi=aoi, chunks=cube_chunks(options)).cube
                refl = preprocess(cube, axis=time_axis("2020-11-01", periods=12))
                load_s = time.perf_counter() - t0
                gate, gate_s = None, 0.0
                if kind == "gated":
                    t0 = time.perf_counter()
                    gate = non_agri_gate(items, aoi, "2021-01-01", "2021-12-31", refl)
                    gate_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                pred = predict_map(refl, net, meta=meta, options=options, skip=None if gate is None else gate.mask())
                infer_s = time.perf_counter() - t0
                maps[kind] = np.asarray(pred["class"])
                row = {"load_graph_s": load_s, "gate_s": gate_s, "infer_s": infer_s, "total_s": gate_s + infer_s,
                       "skipped_model_tiles": pred.attrs["timings"].get("skipped_tiles", 0)}
                if gate is not None:
                    row.update(tiles=len(gate.scores.tiles), skipped_tiles=int(gate.skipped.sum()),
                               skipped_share=float(gate.skipped.mean()), threshold=gate.threshold,
                               agri_min=float(gate.scores.agri.min()), agri_max=float(gate.scores.agri.max()),
                               skipped_pixel_share=float(gate.mask().mean()))
                    mask = gate.mask()
                    row["map_equal_outside_skipped"] = bool((maps["ungated"][~mask] == maps["gated"][~mask]).all())
                runs[kind].append(row)
                print(kind, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    ungated = statistics.median(r["total_s"] for r in runs["ungated"])
    gated = statistics.median(r["total_s"] for r in runs["gated"])
    return {"side_px": side, "pixels": side * side, "model_tile_px": tile, "dates": DATES, "model": meta.name,
            "runs": runs,
            "median_ungated_s": ungated, "median_gated_s": gated, "saved_s": ungated - gated,
            "saved_share": (ungated - gated) / ungated}


def demo(repeats: int) -> dict:
    """``pipeline.run`` of the demo area with and without the gate."""
    from dataclasses import replace

    from cropcore import pipeline
    from cropcore.stac import server
    from cropcore.ui.search import DEMO_AOI

    server.serve()
    params = pipeline.RunParams(DEMO_AOI, "2020-11-01", "2021-10-31", max_cloud=None)
    runs: dict[str, list[dict]] = {"ungated": [], "gated": []}
    gate = None
    for _ in range(repeats):
        for kind in ("ungated", "gated"):
            result = pipeline.run(replace(params, skip_non_agri=kind == "gated"))
            runs[kind].append({k: round(v, 3) for k, v in result.timings.items()})
            gate = result.gate or gate
    assert gate is not None
    return {"runs": runs, "gate": {k: v for k, v in gate.items() if k != "reason"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=960, help="side of the generated AOI in pixels (8 gate tiles)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "gate_cpu.json")
    args = parser.parse_args()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load = os.getloadavg()
    out = {"started": started, "machine": {"cpu": platform.processor() or platform.machine(),
                                           "cores": os.cpu_count()},
           "recall_cv": recall_rows(),
           "generated": [generated(args.side, args.repeats, tile) for tile in (64, 120)], "demo": demo(args.repeats),
           "load_average": {"before": load, "after": os.getloadavg()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
