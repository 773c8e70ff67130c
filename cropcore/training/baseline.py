"""The RandomForest baseline, fitted on the same prepared point features as the network."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from torch import Tensor

from cropcore.data.points import PointSeries, prepare


def random_forest(train: PointSeries, scored: list[PointSeries], mean: list[float], std: list[float], *,
                  seed: int) -> list[Tensor]:
    """Fit a RandomForest on the same prepared features (flattened series + mask); the class probabilities
    of each series in ``scored``."""
    def features(series: PointSeries) -> np.ndarray:
        x, mask = prepare(series, mean, std)
        return np.concatenate([x.reshape(len(x), -1), mask], axis=1)

    rf = RandomForestClassifier(n_estimators=500, n_jobs=2, random_state=seed, class_weight="balanced")
    rf.fit(features(train), train.y)
    out = []
    for series in scored:
        probs = np.zeros((len(series), len(train.class_names)), np.float32)
        probs[:, rf.classes_] = rf.predict_proba(features(series))
        out.append(torch.from_numpy(probs))
    return out
