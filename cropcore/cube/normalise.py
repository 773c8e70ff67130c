"""Per-band normalisation of model inputs: statistics fitted on training data and stored with the model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from cropcore.errors import ShapeError

if TYPE_CHECKING:
    from cropcore.models.meta import ModelMeta


@dataclass(frozen=True)
class NormStats:
    """Per-band mean and standard deviation, stored beside a model (JSON)."""

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> NormStats:
        raw = json.loads(text)
        return cls(tuple(raw["bands"]), tuple(map(float, raw["mean"])), tuple(map(float, raw["std"])))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> NormStats:
        return cls.from_json(Path(path).read_text())

    @classmethod
    def from_meta(cls, meta: ModelMeta) -> NormStats:
        """The statistics stored in a checkpoint's metadata (its bands and normalisation)."""
        return cls(tuple(meta.bands), meta.norm.mean, meta.norm.std)

    def scale(self, values: np.ndarray, band_axis: int, *, inplace: bool = False) -> np.ndarray:
        """``(values - mean) / std`` along ``band_axis`` as float32 (std 0 is taken as 1); numpy, dask or a torch
        tensor (on its device).

        ``inplace=True`` overwrites ``values`` (a float32 numpy array or tensor) instead of allocating a new one.
        """
        shape = [1] * values.ndim
        shape[band_axis] = -1
        mean = np.asarray(self.mean, dtype="float32").reshape(shape)
        std = np.asarray(self.std, dtype="float32")
        std = np.where(std > 0, std, 1).astype("float32").reshape(shape)
        if type(values).__module__.split(".")[0] == "torch":
            import torch

            mean, std = torch.as_tensor(mean, device=values.device), torch.as_tensor(std, device=values.device)
            return values.sub_(mean).div_(std) if inplace else (values - mean) / std
        if inplace:
            values -= mean
            values /= std
            return values
        return ((values - mean) / std).astype("float32")


def fit_norm_stats(cube: xr.DataArray) -> NormStats:
    """Mean and std of each band over every other dimension, ignoring NaN (computes the cube)."""
    dims = [d for d in cube.dims if d != "band"]
    mean = cube.mean(dims, skipna=True).values
    std = cube.std(dims, skipna=True).values
    return NormStats(tuple(str(b) for b in cube["band"].values), tuple(map(float, mean)), tuple(map(float, std)))


def normalize(cube: xr.DataArray, stats: NormStats) -> xr.DataArray:
    """``(x - mean) / std`` per band (std 0 is taken as 1); the cube must hold every band of ``stats``."""
    have = [str(b) for b in cube["band"].values]
    missing = [b for b in stats.bands if b not in have]
    if missing:
        raise ShapeError(f"the cube lacks bands {missing} that the normalisation statistics need: load them")
    cube = cube.sel(band=list(stats.bands))
    return cube.copy(data=stats.scale(cube.data, cube.get_axis_num("band")))
