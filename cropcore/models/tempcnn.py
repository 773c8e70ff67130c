"""TempCNN pixel time-series classifier (Pelletier et al., Remote Sensing 2019) with a date mask.

Input ``x`` is ``(B, T, C)`` on a fixed time axis of ``seq_len`` steps plus a boolean mask ``(B, T)``
(True = observed). Unobserved steps are zeroed and the mask is fed as an extra input channel, so the
network can tell "missing" from "dark". Output: logits ``(B, num_classes)``.
:func:`predict_cube` applies it to every pixel of a ``(T, C, H, W)`` array.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cropcore.errors import ShapeError


class TempCNN(nn.Module):
    """Three 1D convolutions over time, a dense layer, and a linear classifier."""

    def __init__(
        self,
        in_channels: int = 9,
        num_classes: int = 8,
        *,
        seq_len: int = 12,
        hidden: int = 64,
        kernel_size: int = 5,
        fc: int = 256,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.seq_len = seq_len
        layers: list[nn.Module] = []
        cin = in_channels + 1
        for _ in range(3):
            layers += [
                nn.Conv1d(cin, hidden, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm1d(hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            ]
            cin = hidden
        self.convs = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(hidden * seq_len, fc),
            nn.BatchNorm1d(fc),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc, num_classes),
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Return logits (B, K) for ``x`` (B, T, C) and an optional bool mask (B, T)."""
        if x.ndim != 3 or x.shape[1:] != (self.seq_len, self.in_channels):
            raise ShapeError(
                f"TempCNN expects (B, {self.seq_len}, {self.in_channels}), got {tuple(x.shape)}; resample "
                f"series onto the model's {self.seq_len}-step time axis (pad missing steps, mask=False)"
            )
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        elif mask.shape != x.shape[:2] or mask.dtype != torch.bool:
            raise ShapeError(f"mask must be bool {tuple(x.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")
        m = mask.to(x.dtype)[..., None]
        h = torch.cat([x * m, m], dim=-1).transpose(1, 2)  # (B, C+1, T)
        return self.classifier(self.convs(h))

    def reset_head(self, num_classes: int) -> None:
        """Replace the last linear layer by a new one for ``num_classes`` classes (to fine-tune on others)."""
        old = self.classifier[-1]
        self.classifier[-1] = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
        self.num_classes = num_classes


@torch.no_grad()
def predict_cube(
    model: nn.Module, cube: Tensor, mask: Tensor | None = None, *, batch_size: int = 4096
) -> Tensor:
    """Apply a pixel classifier to every pixel of ``cube`` (T, C, H, W); return probabilities (K, H, W).

    ``mask`` is (T,) for the whole cube or (T, H, W) per pixel (True = observed).
    """
    if cube.ndim != 4:
        raise ShapeError(f"predict_cube expects a (T, C, H, W) cube, got {tuple(cube.shape)}")
    t, c, h, w = cube.shape
    pixels = cube.permute(2, 3, 0, 1).reshape(h * w, t, c)
    if mask is None:
        mask = torch.ones(t, dtype=torch.bool)
    mask = mask.to(torch.bool)
    pmask = mask.expand(h * w, t) if mask.ndim == 1 else mask.permute(1, 2, 0).reshape(h * w, t)
    was_training = model.training
    model.eval()
    probs = [
        torch.softmax(model(pixels[i : i + batch_size], pmask[i : i + batch_size]).float(), dim=1)
        for i in range(0, h * w, batch_size)
    ]
    model.train(was_training)
    return torch.cat(probs).T.reshape(-1, h, w)
