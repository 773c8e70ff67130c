"""Lightning data modules: labelled point series, composed patches and PASTIS folds; :func:`datamodule` picks one.

Point series are split by sample id into train/val/test (normalisation from the train split), or, with a
``holdout`` region, tested on that whole region and trained/validated on the others (leave one region out).
Composed, semi-synthetic patches (``data.patches`` in the config, see :mod:`cropcore.data.composed`) are built
from that same split, so patch and pixel models are scored on the same held-out real points.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import xarray as xr
from torch.utils.data import DataLoader, WeightedRandomSampler

from cropcore.cube.indices import add_indices
from cropcore.data.belgium import read_belgium_2021
from cropcore.data.composed import ComposedPatches
from cropcore.data.dl4sits import read_dl4sits
from cropcore.data.pastis import PASTIS_VOID, PastisDataset, collate_patches, fold_split
from cropcore.data.points import PointDataset, PointSeries, concat, norm_stats, split_by_sample
from cropcore.data.worldcereal import read_worldcereal
from cropcore.errors import ConfigError
from cropcore.settings import data_dir
from cropcore.training.config import TrainConfig


def read_points(kind: str, path: str | Path) -> PointSeries:
    """Read labelled point series of ``kind`` ("worldcereal" or "dl4sits"); a WorldCereal folder is the Belgian
    2021 set (:func:`~cropcore.data.belgium.read_belgium_2021`, one point per location)."""
    readers = {"worldcereal": read_worldcereal, "dl4sits": read_dl4sits}
    if kind not in readers:
        raise ConfigError(f"data kind must be one of {sorted(readers)}, got {kind!r}")
    if kind == "worldcereal" and Path(path).is_dir():
        return read_belgium_2021(path)[0].labelled()
    return readers[kind](path).labelled()


def inverse_frequency(counts: np.ndarray) -> list[float]:
    """Class weights ``total / (K * count)``, clipped to [0.2, 5] (absent classes count as 1)."""
    counts = np.asarray(counts, float)
    return np.clip(counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.2, 5.0).tolist()


def with_indices(series: PointSeries, names: list[str]) -> PointSeries:
    """Append spectral indices (:data:`~cropcore.cube.indices.INDICES`) as extra input channels."""
    cube = xr.DataArray(series.x, dims=("sample", "time", "band"), coords={"band": list(series.bands)})
    x = add_indices(cube, names).values.astype(np.float32)
    return replace(series, x=x, bands=(*series.bands, *names))


class PointDataModule(pl.LightningDataModule):
    """Point time series split by sample id into train/val/test; normalisation from the train split."""

    def __init__(
        self,
        kind: str,
        paths: list[str] | None = None,
        *,
        regions: dict[str, list[str]] | None = None,
        holdout: str | None = None,
        test_path: str | None = None,
        split: tuple[float, float, float] = (0.7, 0.1, 0.2),
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
        balanced: bool = False,
        indices: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        root = data_dir()
        if (paths is None) == (regions is None):
            raise ConfigError("give the data as either 'paths' or 'regions' (name -> paths)")
        groups = regions or {"": paths or []}
        parts = {name: concat([read_points(kind, root / p) for p in files]) for name, files in groups.items()}
        series = concat(list(parts.values()))
        region = np.concatenate([np.full(len(part), name, object) for name, part in parts.items()])
        if indices:
            series = with_indices(series, list(indices))
        if holdout is not None and holdout not in parts:
            raise ConfigError(f"holdout region {holdout!r} is not one of the data's regions {sorted(parts)}")
        if test_path is not None or holdout is not None:  # the test set is given: split the rest in train/val
            split = (split[0] / (split[0] + split[1]), split[1] / (split[0] + split[1]), 0.0)
        rest = region != holdout
        train, val, _ = split_by_sample(series.sample_id[rest], tuple(split), seed=seed)
        if test_path:
            test_series = read_points(kind, root / test_path)
            self.test = with_indices(test_series, list(indices)) if indices else test_series
            self.test_region = np.full(len(self.test), "", object)
        else:
            test = ~rest if holdout is not None else split_by_sample(series.sample_id, tuple(split), seed=seed)[2]
            self.test, self.test_region = series.subset(test), region[test]
        others = series.subset(rest)
        self.train, self.val = others.subset(train), others.subset(val)
        self.train_region = region[rest][train]
        self.mean, self.std = norm_stats(self.train.x)

    def _loader(self, series: PointSeries, shuffle: bool) -> DataLoader:
        return DataLoader(PointDataset(series, self.mean, self.std), batch_size=self.hparams.batch_size,
                          shuffle=shuffle, num_workers=self.hparams.num_workers, drop_last=shuffle)

    def train_dataloader(self) -> DataLoader:
        if not self.hparams.balanced:
            return self._loader(self.train, True)
        counts = np.bincount(self.train.y)
        weights = torch.from_numpy(1.0 / counts[self.train.y])
        sampler = WeightedRandomSampler(weights, num_samples=len(self.train), replacement=True)
        return DataLoader(PointDataset(self.train, self.mean, self.std), batch_size=self.hparams.batch_size,
                          sampler=sampler, num_workers=self.hparams.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, False)

    def class_weights(self, num_classes: int) -> list[float]:
        """Inverse-frequency weights of the train split (clipped to [0.2, 5])."""
        return inverse_frequency(np.bincount(self.train.y, minlength=num_classes))


class ComposedDataModule(PointDataModule):
    """Semi-synthetic patches composed from the point split: train patches use only train samples, etc."""

    def __init__(
        self,
        kind: str,
        *,
        size: int = 32,
        parcels: tuple[int, int] = (3, 12),
        noise: float = 0.03,
        train_patches: int = 512,
        eval_patches: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(kind, **kwargs)
        seed = self.hparams.seed

        def patches(series: PointSeries, n: int, offset: int) -> ComposedPatches:
            return ComposedPatches(series, self.mean, self.std, n_patches=n, size=size,
                                   parcels=tuple(parcels), noise=noise, seed=seed + offset)

        self.train_patches = patches(self.train, train_patches, 0)
        self.val_patches = patches(self.val, eval_patches, 1)
        self.test_patches = patches(self.test, eval_patches, 2)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_patches, batch_size=self.hparams.batch_size, shuffle=True,
                          num_workers=self.hparams.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_patches, batch_size=self.hparams.batch_size)

    def class_weights(self, num_classes: int) -> list[float]:
        """Inverse-frequency weights of the training patches' pixels (epoch 0; clipped to [0.2, 5])."""
        counts = np.zeros(num_classes)
        for i in range(len(self.train_patches)):
            parcel, rows = self.train_patches.layout(i)
            counts += np.bincount(self.train.y[rows][parcel].ravel(), minlength=num_classes)
        return inverse_frequency(counts)


class PastisDataModule(pl.LightningDataModule):
    """One PASTIS cross-validation fold (:func:`~cropcore.data.pastis.fold_split`); val/test use the train
    folds' statistics.

    ``root`` is absolute or relative to the sample-data directory.
    """

    def __init__(self, root: str, *, test_fold: int = 1, batch_size: int = 4, num_workers: int = 0,
                 void_label: int = PASTIS_VOID) -> None:
        super().__init__()
        self.save_hyperparameters()
        path = Path(root) if Path(root).is_absolute() else data_dir() / root
        train, val, test = fold_split(test_fold)
        self.train_set = PastisDataset(path, folds=train, void_label=void_label)
        stats = {"mean": self.train_set.mean, "std": self.train_set.std, "void_label": void_label}
        self.val_set = PastisDataset(path, folds=val, **stats)
        self.test_set = PastisDataset(path, folds=test, **stats)

    def _loader(self, dataset: PastisDataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=shuffle, drop_last=shuffle,
                          num_workers=self.hparams.num_workers, collate_fn=collate_patches)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)

    def class_weights(self, num_classes: int) -> list[float]:
        """Inverse pixel-frequency weights of the train folds (clipped to [0.2, 5])."""
        counts = np.zeros(num_classes)
        for i in range(len(self.train_set)):
            y = self.train_set.labels(i).ravel()
            counts += np.bincount(y[(y != self.hparams.void_label) & (y < num_classes)], minlength=num_classes)
        return inverse_frequency(counts)


def datamodule(config: TrainConfig) -> PointDataModule | PastisDataModule:
    """The data module of a config: point series, composed patches (``data.patches``) or PASTIS folds."""
    data = config.data
    if data["kind"] == "pastis":
        return PastisDataModule(data["root"], test_fold=data.get("test_fold", 1),
                                batch_size=data.get("batch_size", 4))
    known = {"kind", "paths", "regions", "holdout", "test_path", "split", "batch_size", "balanced", "indices",
             "patches"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown data option(s) {unknown}; valid: {sorted(known)}")
    common = {"paths": data.get("paths"), "regions": data.get("regions"), "holdout": data.get("holdout"),
              "test_path": data.get("test_path"), "split": tuple(data.get("split", (0.7, 0.1, 0.2))),
              "batch_size": data.get("batch_size", 32), "seed": config.seed, "balanced": data.get("balanced", False),
              "indices": data.get("indices")}
    if "patches" in data:
        return ComposedDataModule(data["kind"], **data["patches"], **common)
    return PointDataModule(data["kind"], **common)
