"""The ``predict`` gate (``--skip-non-agri``, off by default): tiles the binary patch classifier is sure hold no
agriculture are not segmented.

The AOI is cut into 120 x 120 px tiles and scored as in :mod:`cropcore.patches.tiles`. A tile is skipped when its
probability of agriculture is **at or below** the checkpoint's ``gate_threshold`` (the highest threshold that kept
every agricultural patch of its validation fold; the rule whose held-out recall the model card reports) and it
holds data. Its pixels are :data:`~cropcore.inference.options.NODATA` (255) in every layer of the map, so the
legend and the areas never count them as a class, and the run manifest lists the skipped tiles under ``"gate"``
with the reason. The measured recall of the gate is below 0.99 (model card, "Gate"): it can drop agricultural
land, which is why it is off by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac
import xarray as xr

from cropcore.aoi import AOILike
from cropcore.dates import DateLike
from cropcore.errors import ConfigError
from cropcore.inference.options import NODATA
from cropcore.patches.tiles import GATE_MODEL, TileScores, load_composite, score_tiles

#: Printed whenever the gate is used.
RECALL_WARNING = ("--skip-non-agri: the gate's measured recall of agricultural tiles is below 0.99 (0.94 ± 0.06 "
                  "over 5 held-out folds of 124 patches, docs/MODEL_CARD_PATCHES.md#gate): skipped tiles may "
                  "hold crops, and their pixels are left unmapped (no data)")
#: What the skipped pixels hold, and why (recorded in the manifest).
REASON = ("the binary patch classifier scored the tile's probability of agriculture at or below the checkpoint's "
          "gate threshold: not segmented, its pixels are no data")


@dataclass
class Gate:
    """Which tiles of a run's grid are skipped (``skipped`` (N,), aligned with ``scores.tiles``) and why."""

    scores: TileScores
    threshold: float
    skipped: np.ndarray

    def mask(self) -> np.ndarray:
        """(y, x) True on the pixels of skipped tiles."""
        out = np.zeros(self.scores.shape, bool)
        for t, skip in zip(self.scores.tiles, self.skipped, strict=True):
            out[t.slices] = skip
        return out

    def manifest(self) -> dict[str, Any]:
        """What the run manifest records under ``"gate"``."""
        s = self.scores
        return {
            "model": s.gate_model, "threshold": self.threshold, "rule": "skip where agri <= threshold",
            "value": NODATA, "reason": REASON, "tiles": len(s.tiles), "skipped_tiles": int(self.skipped.sum()),
            "skipped_pixels": int(self.mask().sum()), "composite_scenes": s.scenes, "filled_bands": s.filled,
            "skipped": [{"row": t.row, "col": t.col, "height": t.height, "width": t.width,
                         "agri": round(float(s.agri[i]), 4), "bounds_lonlat": [round(v, 6) for v in s.lonlat[i]]}
                        for i, t in enumerate(s.tiles) if self.skipped[i]],
        }


def decide(scores: TileScores, threshold: float | None = None) -> Gate:
    """The gate over ``scores`` at ``threshold`` (default: the gate model's stored ``gate_threshold``)."""
    value = scores.gate_threshold if threshold is None else threshold
    if value is None:
        raise ConfigError(f"{scores.gate_model} stores no gate threshold: gate with a binary patch classifier "
                          f"such as {GATE_MODEL}")
    return Gate(scores, float(value), (scores.agri <= value) & (scores.valid > 0))


def non_agri_gate(items: Sequence[pystac.Item], aoi: AOILike, start: DateLike, end: DateLike, grid: xr.DataArray, *,
                  resolution: float = 10.0, model: str = GATE_MODEL) -> Gate:
    """Score the tiles of ``grid`` (a run's reflectance: its ``y`` and ``x``) from ``items`` and decide the gate."""
    comp = load_composite(items, aoi, start, end, resolution=resolution)
    refl = comp.reflectance
    if refl.sizes["y"] != grid.sizes["y"] or refl.sizes["x"] != grid.sizes["x"] or not (
            np.allclose(refl["x"], grid["x"]) and np.allclose(refl["y"], grid["y"])):
        raise ConfigError("the gate's composite and the map are on different grids: give both the same AOI and "
                          "resolution")
    return decide(score_tiles(refl, gate_model=model, label_model=None, filled=comp.filled, scenes=comp.scenes))
