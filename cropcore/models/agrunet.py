"""AgrUNet: a U-Net over (time, y, x) with a ConvLSTM bottleneck and deep supervision.

Input ``x`` is ``(B, T, C, H, W)`` with an optional boolean padding mask ``(B, T)`` (True = real date);
the output is per-pixel logits ``(B, num_classes, H, W)``.

* Encoder: per level two 3D convolutions (3x3x3) with BatchNorm and ReLU, then a (2, 2, 2) max-pool
  (time and space) so the temporal length shrinks early, where the feature maps are large. Padded dates
  are zeroed after every block and the mask is pooled alongside (a pooled step is valid if any input is).
* Bottleneck: a ConvLSTM over the pooled dates at 1/2^(depth-1) resolution. Padded steps keep the previous
  state. Recurrence lives only here, where it is cheap.
* Skips: each encoder level is reduced over time by a masked temporal mean and broadcast over the
  decoder's temporal axis.
* Decoder: per level, a transposed 3D convolution (space x2), concatenation with the skip, two 3D
  convolutions, all over the bottleneck's temporal axis; the final map is a masked temporal mean.
* Deep supervision: 1x1 heads on every decoder level but the last (which has the main head),
  upsampled to the input size. They are
  returned with the main logits when ``deep_supervision`` is on and the module is training, or when
  ``return_aux=True`` is passed.

Cost of the default configuration (``widths=(16, 32, 64, 128)``, 10 bands, 10 classes, one 128 x 128
patch; measured with ``torch.utils.flop_counter.FlopCounterMode`` by ``benchmarks/bench_model.py``):
see ``docs/MODEL_CARD.md`` ("AgrUNet cost") for parameters, GFLOP at T=12 / T=40 and patches/s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cropcore.errors import ShapeError
from cropcore.models.conv import Conv3d


class Block3d(nn.Module):
    """Two (3x3x3 conv, BatchNorm, ReLU) layers; padded dates are zeroed before and after each layer (no
    ``mask``: every date is real)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(Conv3d(c, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))
            for c in (cin, cout)
        )

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        for layer in self.layers:
            x = layer(x) if mask is None else _apply_mask(layer(_apply_mask(x, mask)), mask)
        return x


def _apply_mask(x: Tensor, mask: Tensor) -> Tensor:
    """Zero features of padded dates; ``x`` is (B, C, T, H, W), ``mask`` (B, T)."""
    return x * mask[:, None, :, None, None].to(x.dtype)


def _pool_mask(mask: Tensor) -> Tensor:
    """Halve the temporal length of a (B, T) mask (ceil), valid if any pooled date is valid."""
    return F.max_pool1d(mask[:, None].float(), 2, 2, ceil_mode=True)[:, 0] > 0


def masked_temporal_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the time axis of (B, C, T, H, W) counting only valid dates; returns (B, C, H, W)."""
    w = mask.to(x.dtype)
    count = w.sum(1).clamp_min(1.0)
    return torch.einsum("bcthw,bt->bchw", x, w) / count[:, None, None, None]


class ConvLSTM(nn.Module):
    """Single-layer ConvLSTM over (B, C, T, H, W); padded steps carry the previous state."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        pad = kernel_size // 2
        self.x2g = nn.Conv2d(in_channels, 4 * hidden, kernel_size, padding=pad)
        self.h2g = nn.Conv2d(hidden, 4 * hidden, kernel_size, padding=pad, bias=False)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        # input-to-gate convolution for every date in one call; only the recurrent part loops.
        gx = self.x2g(x.transpose(1, 2).reshape(b * t, c, h, w)).reshape(b, t, 4 * self.hidden, h, w)
        hs = x.new_zeros(b, self.hidden, h, w)
        cs = x.new_zeros(b, self.hidden, h, w)
        outs = []
        for i in range(t):
            gates = gx[:, i] + self.h2g(hs)
            ig, fg, og, gg = gates.chunk(4, dim=1)
            c_new = torch.sigmoid(fg) * cs + torch.sigmoid(ig) * torch.tanh(gg)
            h_new = torch.sigmoid(og) * torch.tanh(c_new)
            keep = mask[:, i, None, None, None]
            cs = torch.where(keep, c_new, cs)
            hs = torch.where(keep, h_new, hs)
            outs.append(hs * keep.to(hs.dtype))
        return torch.stack(outs, dim=2)


class AgrUNet(nn.Module):
    """3D-convolutional U-Net with a ConvLSTM bottleneck for crop-type segmentation of S2 time series."""

    def __init__(
        self,
        in_channels: int = 10,
        num_classes: int = 10,
        *,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        if len(widths) < 3:
            raise ValueError(f"AgrUNet needs at least 3 levels (two decoder heads), got widths={widths}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.widths = tuple(widths)
        self.deep_supervision = deep_supervision
        self.encoder = nn.ModuleList(
            Block3d(cin, cout) for cin, cout in zip((in_channels, *widths[:-2]), widths[:-1], strict=True)
        )
        self.bottleneck = ConvLSTM(widths[-2], widths[-1])
        self.up = nn.ModuleList(
            nn.ConvTranspose3d(cin, cout, (1, 2, 2), stride=(1, 2, 2))
            for cin, cout in zip(widths[:0:-1], widths[-2::-1], strict=True)
        )
        self.decoder = nn.ModuleList(Block3d(2 * c, c) for c in widths[-2::-1])
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.aux_heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in widths[-2:0:-1])

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this."""
        return 2 ** (len(self.widths) - 1)

    def check_input(self, x: Tensor, mask: Tensor | None) -> None:
        """Raise :class:`ShapeError` with the fix when ``x``/``mask`` cannot be processed."""
        if x.ndim != 5:
            raise ShapeError(f"AgrUNet expects (B, T, C, H, W), got shape {tuple(x.shape)}")
        _, t, c, h, w = x.shape
        if c != self.in_channels:
            raise ShapeError(f"AgrUNet was built for {self.in_channels} bands, got {c}")
        m = self.size_multiple
        if h % m or w % m:
            ph, pw = -(-h // m) * m, -(-w // m) * m
            raise ShapeError(
                f"AgrUNet with {len(self.widths)} levels needs H and W divisible by {m}; got {h}x{w}. "
                f"Pad the input to {ph}x{pw} (e.g. torch.nn.functional.pad with mode='reflect')."
            )
        if mask is not None and (mask.shape != (x.shape[0], t) or mask.dtype != torch.bool):
            raise ShapeError(f"mask must be bool {(x.shape[0], t)}, got {mask.dtype} {tuple(mask.shape)}")

    def forward(
        self, x: Tensor, mask: Tensor | None = None, *, return_aux: bool | None = None
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Return logits (B, K, H, W); with auxiliary outputs also the deep-supervision logits."""
        self.check_input(x, mask)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if return_aux is None:
            return_aux = self.deep_supervision and self.training
        size = x.shape[-2:]
        masking = not bool(mask.all())  # without padded dates (the usual case) the blocks skip the masking
        h = x.permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
        if h.device.type == "cpu":
            h = h.contiguous(memory_format=torch.channels_last_3d)
        skips = []
        for block in self.encoder:
            h = block(h, mask if masking else None)
            skips.append(masked_temporal_mean(h, mask))
            h = F.max_pool3d(h, 2, 2, ceil_mode=True)
            mask = _pool_mask(mask)
        h = self.bottleneck(h, mask)
        aux = []
        for i, (up, block, skip) in enumerate(zip(self.up, self.decoder, reversed(skips), strict=True)):
            h = up(h)
            h = torch.cat([h, skip[:, :, None].expand(-1, -1, h.shape[2], -1, -1)], dim=1)
            h = block(h, mask if masking else None)
            if return_aux and i < len(self.aux_heads):
                aux_logits = self.aux_heads[i](masked_temporal_mean(h, mask))
                aux.append(F.interpolate(aux_logits, size=size, mode="bilinear", align_corners=False))
        logits = self.head(masked_temporal_mean(h, mask))
        return (logits, aux) if return_aux else logits
