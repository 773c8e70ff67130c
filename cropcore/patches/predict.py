"""Scoring reflectance patches with a patch checkpoint: :class:`PatchClassifier` (what the dashboard tile
layer and a ``predict`` gate call)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cropcore.errors import ShapeError
from cropcore.patches.checkpoint import load_patch_checkpoint
from cropcore.patches.data import AGRI19


@dataclass(frozen=True)
class PatchScores:
    """``agri`` (N,): probability that a patch holds agriculture; ``labels`` (N, 19) multi-label
    probabilities (multi-label models only, else ``None``)."""

    agri: np.ndarray
    labels: np.ndarray | None


class PatchClassifier:
    """A loaded patch checkpoint: normalises with its stored band statistics and scores patches in batches.

    A binary model's ``agri`` is its sigmoid; a multi-label model's is the largest probability among the
    agricultural classes (:data:`~cropcore.patches.data.AGRI19`).
    """

    def __init__(self, checkpoint: str | Path, *, batch_size: int = 32) -> None:
        self.model, self.meta = load_patch_checkpoint(checkpoint)
        self.batch_size = batch_size
        self.mean = torch.tensor(self.meta["norm"]["mean"]).view(1, -1, 1, 1)
        self.std = torch.tensor(self.meta["norm"]["std"]).view(1, -1, 1, 1)

    @property
    def bands(self) -> list[str]:
        """The bands the model takes, in order."""
        return list(self.meta["bands"])

    @property
    def threshold(self) -> float:
        """The decision threshold on ``agri`` tuned on validation (binary models; 0.5 otherwise)."""
        return float(self.meta.get("threshold", 0.5))

    @property
    def gate_threshold(self) -> float | None:
        """For skipping non-agricultural patches: the highest threshold that kept every agricultural patch of
        the validation fold (binary models; ``None`` otherwise). Not a recall guarantee (model card)."""
        value = self.meta.get("gate_threshold")
        return None if value is None else float(value)

    def logits(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw logits (N, K) of reflectance patches (N, bands, H, W) (or one patch (bands, H, W))."""
        x = torch.as_tensor(np.asarray(x, np.float32))
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != len(self.bands):
            raise ShapeError(f"patches must be (N, {len(self.bands)}, H, W) reflectance in bands {self.bands}, "
                             f"got shape {tuple(x.shape)}")
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), self.batch_size):
                batch = (x[start:start + self.batch_size] - self.mean) / self.std
                out.append(self.model(torch.nan_to_num(batch)).float())
        return torch.cat(out)

    def score(self, x: np.ndarray | torch.Tensor) -> PatchScores:
        """Agricultural probability (and multi-label probabilities) per patch."""
        probs = torch.sigmoid(self.logits(x)).numpy()
        if self.meta["task"] == "binary":
            return PatchScores(probs[:, 0], None)
        return PatchScores(probs[:, list(AGRI19)].max(1), probs)

    def describe(self) -> dict[str, Any]:
        """Name, task, classes and held-out metrics as stored in the checkpoint."""
        return {k: self.meta.get(k) for k in ("name", "task", "architecture", "classes", "metrics")}
