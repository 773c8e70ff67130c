"""Class probabilities of a trained model for prepared point series (pixel models, or patch models on uniform
patches)."""

from __future__ import annotations

import numpy as np
import torch

from cropcore.data.composed import uniform_patches


def predict_series(model: torch.nn.Module, x: np.ndarray, mask: np.ndarray, *, patch_size: int | None = None,
                   latlon: np.ndarray | None = None, batch_size: int = 32) -> torch.Tensor:
    """Class probabilities (N, K) for prepared series ``x`` (N, T, C) and ``mask`` (N, T).

    With ``patch_size``, ``model`` is a patch model applied to uniform ``patch_size``-pixel patches. ``latlon``
    (N, 2) degrees is passed as ``model(x, mask, latlon=...)``: give it exactly for pixel models that use
    location (:func:`cropcore.models.uses_location`).
    """
    model.eval()
    xt, mt = torch.from_numpy(x), torch.from_numpy(mask)
    lt = None if latlon is None else torch.from_numpy(np.asarray(latlon, np.float32))
    probs = []
    with torch.inference_mode():
        for i in range(0, len(xt), batch_size):
            xb, mb = xt[i : i + batch_size], mt[i : i + batch_size]
            if patch_size is None:
                out = model(xb, mb) if lt is None else model(xb, mb, latlon=lt[i : i + batch_size])
                probs.append(torch.softmax(out.float(), dim=1))
            else:
                p = torch.softmax(model(*uniform_patches(xb, mb, patch_size)).float(), dim=1)
                probs.append(p.mean(dim=(2, 3)))
    return torch.cat(probs) if probs else torch.zeros(0, 0)
