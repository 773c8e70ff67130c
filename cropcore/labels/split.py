"""Train/validation/test split by label (parcel), stratified by class: a polygon's pixels stay on one side."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Shares of each class's labels in train, validation and test (validation and test get at least one each).
FRACTIONS = (0.7, 0.1, 0.2)


def split_by_parcel(parcel: np.ndarray, y: np.ndarray, *, fractions: tuple[float, float, float] = FRACTIONS,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean train/val/test masks over pixels; per class, its parcels are shuffled (seeded) and divided.

    Every class with at least three parcels gets one or more in each split.
    """
    rng = np.random.default_rng(seed)
    first = pd.DataFrame({"parcel": parcel, "y": y}).drop_duplicates("parcel")
    train, val, test = [], [], []
    for _, ids in first.groupby("y")["parcel"]:
        ids = rng.permutation(ids.to_numpy())
        n_test = max(1, round(fractions[2] * len(ids)))
        n_val = max(1, round(fractions[1] * len(ids)))
        test += list(ids[:n_test])
        val += list(ids[n_test : n_test + n_val])
        train += list(ids[n_test + n_val :])
    return np.isin(parcel, train), np.isin(parcel, val), np.isin(parcel, test)
