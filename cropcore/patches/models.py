"""Patch classifiers for single-date Sentinel-2 patches (B, 12, H, W) of reflectance, z-scored per band.

* :class:`ResNet50` — the bottleneck ResNet-50 (3-4-6-3 blocks) with a 12-band stem and a multi-label head
  (one logit per class, trained with BCE); ``width`` scales every layer (64 is the original).
* :class:`SmallCNN` — four conv-BN-ReLU stages and global pooling: the cheap baseline.
* :class:`CNNViT` — a convolutional stem (local features, stride 4), a patch embedding into tokens, a
  transformer encoder over the tokens with a CLS token (or mean pooling), and a linear head.

Every model checks its input with :func:`check_input`, whose errors say what to change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cropcore.errors import ShapeError


def check_input(x: Tensor, in_channels: int, name: str, *, minimum: int = 1, multiple: int = 1) -> None:
    """Refuse anything but (B, in_channels, H, W) with H, W >= ``minimum`` and multiples of ``multiple``."""
    if x.ndim != 4:
        raise ShapeError(f"{name} takes patches (batch, bands, height, width), got shape {tuple(x.shape)}; "
                         "add a batch axis with x[None] for one patch")
    if x.shape[1] != in_channels:
        raise ShapeError(f"{name} was built for {in_channels} bands, got {x.shape[1]}; give the bands "
                         "B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12 in this order")
    h, w = x.shape[-2:]
    if h < minimum or w < minimum:
        raise ShapeError(f"{name} needs patches of at least {minimum} x {minimum} pixels, got {h} x {w}; "
                         "give larger patches")
    if h % multiple or w % multiple:
        raise ShapeError(f"{name} needs height and width that are multiples of {multiple}, got {h} x {w}; "
                         f"crop or pad the patch to {max(multiple, h // multiple * multiple)} x "
                         f"{max(multiple, w // multiple * multiple)}")


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4), with a projection shortcut where the shape changes."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(
            _conv_bn(cin, planes, 1), _conv_bn(planes, planes, 3, stride),
            nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        nn.init.zeros_(self.body[-1].weight)  # each block starts as the identity (Goyal et al. 2017)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNet50(nn.Module):
    """ResNet-50 for ``in_channels`` Sentinel-2 bands; ``num_classes`` logits (multi-label: BCE per class)."""

    blocks = (3, 4, 6, 3)

    def __init__(self, in_channels: int = 12, num_classes: int = 19, width: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stem = nn.Sequential(_conv_bn(in_channels, width, 7, 2), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], width
        for i, n in enumerate(self.blocks):
            planes = width * 2**i
            for j in range(n):
                layers.append(Bottleneck(cin, planes, stride=2 if j == 0 and i > 0 else 1))
                cin = planes * Bottleneck.expansion
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.in_channels, "ResNet50", minimum=32)
        return self.head(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1))


class SmallCNN(nn.Module):
    """Four conv stages (width, 2w, 4w, 8w; the last three stride 2) and global average pooling."""

    def __init__(self, in_channels: int = 12, num_classes: int = 1, width: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.features = nn.Sequential(
            _conv_bn(in_channels, width), _conv_bn(width, 2 * width, stride=2),
            _conv_bn(2 * width, 4 * width, stride=2), _conv_bn(4 * width, 8 * width, stride=2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.in_channels, "SmallCNN", minimum=8)
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1))


class CNNViT(nn.Module):
    """Conv stem (stride 4) -> ``token`` x ``token`` patch embedding -> transformer encoder -> CLS or mean -> head.

    Positional embeddings are learnt for an ``image_size`` patch and interpolated for other sizes.
    """

    def __init__(self, in_channels: int = 12, num_classes: int = 1, image_size: int = 120, stem: int = 32,
                 dim: int = 96, depth: int = 4, heads: int = 4, token: int = 5, pool: str = "cls",
                 dropout: float = 0.1) -> None:
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ShapeError(f"CNNViT pool must be 'cls' or 'mean', got {pool!r}")
        self.in_channels, self.pool, self.multiple = in_channels, pool, 4 * token
        if image_size % self.multiple:
            raise ShapeError(f"CNNViT image_size {image_size} is not a multiple of 4 x token = {self.multiple}")
        self.stem = nn.Sequential(_conv_bn(in_channels, stem, stride=2), _conv_bn(stem, stem),
                                  _conv_bn(stem, stem, stride=2))
        self.embed = nn.Conv2d(stem, dim, token, token)
        grid = image_size // self.multiple
        self.pos = nn.Parameter(torch.zeros(1, dim, grid, grid))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.in_channels, "CNNViT", minimum=self.multiple, multiple=self.multiple)
        tokens = self.embed(self.stem(x))
        pos = self.pos if self.pos.shape[-2:] == tokens.shape[-2:] else F.interpolate(
            self.pos, size=tokens.shape[-2:], mode="bilinear", align_corners=False)
        tokens = (tokens + pos).flatten(2).transpose(1, 2)
        if self.pool == "cls":
            tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        z = self.norm(self.encoder(tokens))
        return self.head(z[:, 0] if self.pool == "cls" else z.mean(1))
