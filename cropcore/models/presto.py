"""Presto as a pixel time-series classifier, fine-tuned from its pretrained encoder.

Presto: G. Tseng, R. Cartuyvels, I. Zvonkov, M. Purohit, D. Rolnick and H. Kerner, "Lightweight, Pre-trained
Transformers for Remote Sensing Timeseries", 2023 (nasaharvest/presto, MIT licence). The weights it loads are
the authors' ``default_model.pt`` and ESA WorldCereal's crop-type fine-tuning of it (MIT licence); see the
models folder's README. This module re-implements the encoder so that those weights load unchanged.

Presto embeds, per time step, each channel group (S1, S2 RGB, S2 red edge, S2 NIR 10 m, S2 NIR 20 m (B8A),
S2 SWIR, ERA5, SRTM, NDVI, Dynamic World) as one token; a token carries a month encoding, a channel-group
encoding and a position encoding; one more token encodes the location. Tokens of missing groups or dates are
masked: they take no part in attention nor in the mean that pools the encoder output. Here only Sentinel-2
groups are filled: S1, ERA5, SRTM, Dynamic World (the "missing" class) and any S2 group with a band absent
from ``bands`` (B8A in the WorldCereal files) are always masked, so their tokens are not built at all, which
gives the same output as building and masking them. NDVI is computed from B04 and B08 reflectance as Presto
does. A linear head on the pooled output classifies, as in Presto's fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cropcore.errors import CheckpointError, ConfigError, ShapeError

#: Presto's channel groups in its order (the order sets each group's channel-encoding index) and their bands.
CHANNEL_GROUPS: dict[str, tuple[str, ...]] = {
    "S1": ("VV", "VH"),
    "S2_RGB": ("B02", "B03", "B04"),
    "S2_Red_Edge": ("B05", "B06", "B07"),
    "S2_NIR_10m": ("B08",),
    "S2_NIR_20m": ("B8A",),
    "S2_SWIR": ("B11", "B12"),
    "ERA5": ("temperature_2m", "total_precipitation"),
    "SRTM": ("elevation", "slope"),
    "NDVI": ("NDVI",),
}
#: Groups built from Sentinel-2 reflectance (NDVI from B04 and B08); the others are always masked here.
S2_GROUPS = ("S2_RGB", "S2_Red_Edge", "S2_NIR_10m", "S2_NIR_20m", "S2_SWIR", "NDVI")
DYNAMIC_WORLD_CLASSES = 9  # index 9 of ``dw_embed`` is Dynamic World's "missing" class
#: Encoder weights of WorldCereal's file that the standard Presto encoder lacks: an encoding of the label's
#: month ("valid month"), an input cropcore's series do not carry.
WORLDCEREAL_EXTRA = ("valid_month_encoding.weight",)


def position_table(steps: int, dim: int) -> Tensor:
    """Sinusoidal position encoding (steps, dim): sin on even, cos on odd columns, wavelengths up to 1000."""
    pos = torch.arange(steps, dtype=torch.float64)[:, None]
    rate = 1000.0 ** (2 * (torch.arange(dim) // 2) / dim).to(torch.float64)
    angle = pos / rate
    table = torch.where(torch.arange(dim) % 2 == 0, angle.sin(), angle.cos())
    return table.float()


def month_table(dim: int) -> Tensor:
    """Month encoding (12, dim): sin of the month's angle on the first half, cos on the second (0 = January)."""
    angle = torch.arange(12, dtype=torch.float64)[:, None] * (2 * math.pi / 12)
    return torch.cat([angle.sin().expand(12, dim // 2), angle.cos().expand(12, dim // 2)], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention in which masked tokens are not attended to."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """``x`` (B, N, D), ``keep`` (B, N) bool: tokens that may be attended to."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Two linear layers with a GELU between."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))


class PrestoEncoder(nn.Module):
    """Presto's encoder; its parameter names and shapes are those of the published weights."""

    def __init__(self, embedding_size: int = 128, depth: int = 2, num_heads: int = 8, mlp_ratio: float = 4.0,
                 max_sequence_length: int = 24) -> None:
        super().__init__()
        quarter = embedding_size // 4  # month and channel encodings take a quarter each, position the rest
        self.eo_patch_embed = nn.ModuleDict(
            {name: nn.Linear(len(bands), embedding_size) for name, bands in CHANNEL_GROUPS.items()})
        self.dw_embed = nn.Embedding(DYNAMIC_WORLD_CLASSES + 1, embedding_size)
        self.latlon_embed = nn.Linear(3, embedding_size)
        self.blocks = nn.ModuleList([Block(embedding_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embedding_size)
        self.register_buffer("pos_embed", position_table(max_sequence_length, embedding_size - 2 * quarter)[None])
        self.month_embed = nn.Embedding.from_pretrained(month_table(quarter), freeze=True)
        self.channel_embed = nn.Embedding(len(CHANNEL_GROUPS) + 1, quarter)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    @staticmethod
    def cartesian(latlon: Tensor) -> Tensor:
        """(lat, lon) in degrees -> a point (x, y, z) on the unit sphere."""
        lat, lon = torch.deg2rad(latlon).unbind(-1)
        return torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], dim=-1)

    def forward(self, groups: Mapping[str, Tensor], observed: Tensor, months: Tensor, latlon: Tensor) -> Tensor:
        """Pooled embedding (B, D) of the given channel groups.

        ``groups``: name -> values (B, T, bands of the group) as Presto normalises them; groups not given are
        missing. ``observed`` (B, T) bool: dates not observed are masked in every group. ``months`` (T,) month
        index of each step (0 = January); ``latlon`` (B, 2) degrees.
        """
        t = observed.shape[1]
        month, position = self.month_embed(months), self.pos_embed[0, :t]
        tokens = [self.latlon_embed(self.cartesian(latlon))[:, None]]
        for name, values in groups.items():
            channel = self.channel_embed.weight[list(CHANNEL_GROUPS).index(name)].expand(t, -1)
            tokens.append(self.eo_patch_embed[name](values) + torch.cat([month, channel, position], dim=-1))
        x = torch.cat(tokens, dim=1)
        keep = torch.cat([observed.new_ones(observed.shape[0], 1), observed.repeat(1, len(groups))], dim=1)
        for block in self.blocks:
            x = block(x, keep)
        weights = keep.to(x.dtype)[..., None]
        return self.norm((x * weights).sum(1) / weights.sum(1))


class PrestoClassifier(nn.Module):
    """Presto's encoder on Sentinel-2 series, a linear head on its pooled output.

    ``bands``: the input bands in order (each must belong to one of Presto's groups); a group is used when all
    its bands are present (NDVI when B04 and B08 are). ``months``: calendar month (1-12) of each time step.
    Inputs are z-scored reflectance; :meth:`set_input_norm` stores the mean/std that undo it.
    """

    def __init__(self, in_channels: int, num_classes: int, bands: Sequence[str], months: Sequence[int], *,
                 dropout: float = 0.1, embedding_size: int = 128, depth: int = 2, num_heads: int = 8,
                 mlp_ratio: float = 4.0, max_sequence_length: int = 24) -> None:
        super().__init__()
        bands, months = tuple(bands), tuple(int(m) for m in months)
        known = {b for name in S2_GROUPS for b in CHANNEL_GROUPS[name]} - {"NDVI"}
        if len(bands) != in_channels or len(set(bands)) != len(bands):
            raise ConfigError(f"bands must be {in_channels} distinct names, got {list(bands)}")
        if unknown := sorted(set(bands) - known):
            raise ConfigError(f"Presto takes Sentinel-2 bands {sorted(known)}; not {unknown}")
        if not months or len(months) > max_sequence_length or not all(1 <= m <= 12 for m in months):
            raise ConfigError(f"months must be 1 to {max_sequence_length} calendar months (1-12), got {list(months)}")
        self.in_channels, self.num_classes, self.bands, self.seq_len = in_channels, num_classes, bands, len(months)
        present = set(bands) | ({"NDVI"} if {"B04", "B08"} <= set(bands) else set())
        self.groups = {name: [bands.index(b) for b in CHANNEL_GROUPS[name] if b != "NDVI"]
                       for name in S2_GROUPS if set(CHANNEL_GROUPS[name]) <= present}
        self.ndvi_bands = (bands.index("B04"), bands.index("B08")) if "NDVI" in self.groups else None
        self.encoder = PrestoEncoder(embedding_size, depth, num_heads, mlp_ratio, max_sequence_length)
        for name, embed in self.encoder.eo_patch_embed.items():  # always-masked groups get no gradient
            embed.requires_grad_(name in self.groups)
        self.encoder.dw_embed.requires_grad_(False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embedding_size, num_classes)
        self.register_buffer("months", torch.tensor(months) - 1, persistent=False)
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))

    def set_input_norm(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Per-band mean and std of the reflectance the inputs were z-scored with (saved in the state dict)."""
        if len(mean) != self.in_channels or len(std) != self.in_channels:
            raise ShapeError(f"set_input_norm needs {self.in_channels} means and stds, got {len(mean)}, {len(std)}")
        self.input_mean.copy_(torch.as_tensor(mean, dtype=self.input_mean.dtype))
        self.input_std.copy_(torch.as_tensor(std, dtype=self.input_std.dtype))

    def forward(self, x: Tensor, mask: Tensor, latlon: Tensor | None = None) -> Tensor:
        """Logits (B, K) for z-scored ``x`` (B, T, C), bool ``mask`` (B, T) (True = observed) and ``latlon``
        (B, 2), each series' latitude and longitude in degrees."""
        if latlon is None:
            raise ShapeError("Presto needs latlon (B, 2), each series' latitude and longitude in degrees, for "
                             "its location token; got None")
        if x.ndim != 3 or x.shape[1:] != (self.seq_len, self.in_channels):
            raise ShapeError(f"Presto expects (B, {self.seq_len}, {self.in_channels}), got {tuple(x.shape)}")
        if mask.shape != x.shape[:2] or mask.dtype != torch.bool:
            raise ShapeError(f"mask must be bool {tuple(x.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")
        if latlon.shape != (x.shape[0], 2):
            raise ShapeError(f"latlon must be ({x.shape[0]}, 2) degrees, got {tuple(latlon.shape)}")
        reflectance = torch.where(mask[..., None], x * self.input_std + self.input_mean, 0.0)
        groups = {name: reflectance[..., idx] for name, idx in self.groups.items() if name != "NDVI"}
        if self.ndvi_bands is not None:
            red, nir = reflectance[..., self.ndvi_bands[0]], reflectance[..., self.ndvi_bands[1]]
            total = red + nir
            ndvi = torch.where(total > 0, (nir - red) / torch.where(total > 0, total, 1.0), 0.0)
            groups["NDVI"] = ndvi[..., None]
        pooled = self.encoder(groups, mask, self.months, latlon.to(x.dtype))
        return self.head(self.dropout(pooled))

    def reset_head(self, num_classes: int) -> None:
        """Replace the classification head by a new one for ``num_classes`` classes (to fine-tune on others)."""
        old = self.head
        self.head = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
        self.num_classes = num_classes

    def load_pretrained(self, path: str | Path) -> None:
        """Load Presto encoder weights from ``path``: the authors' ``presto_default_model.pt`` (encoder and
        decoder) or WorldCereal's ``worldcereal_presto_croptype_monthly.pt`` (encoder and crop-type head).

        Only the encoder is taken (keys ``encoder.*``, or a bare encoder state dict); every one of its weights
        must be present with the right shape, and no other encoder key may remain, else :class:`CheckpointError`.
        The decoder is for pretraining only. WorldCereal's head is left out because the order of its 60 classes
        is not documented, so its outputs cannot be mapped to a legend; its ``valid_month_encoding`` (see
        :data:`WORLDCEREAL_EXTRA`) is left out too.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise CheckpointError(f"{path} is not a readable torch state dict: {exc}") from None
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path} does not hold a state dict")
        prefix = "encoder." if any(k.startswith("encoder.") for k in state) else ""
        weights = {k[len(prefix):]: v for k, v in state.items()
                   if k.startswith(prefix) and k[len(prefix):] not in WORLDCEREAL_EXTRA}
        own = self.encoder.state_dict()
        missing, unexpected = sorted(own.keys() - weights.keys()), sorted(weights.keys() - own.keys())
        shapes = [f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
                  if k in weights and weights[k].shape != v.shape]
        if missing or unexpected or shapes:
            raise CheckpointError(f"{path} is not a Presto encoder: missing {missing}, unexpected {unexpected}, "
                                  f"wrong shapes {shapes}")
        self.encoder.load_state_dict(weights)
