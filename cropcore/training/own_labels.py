"""Fine-tune the dashboard's default model on a user's own labels: ``cropcore train --labels FILE``.

:func:`train_on_labels` reads and checks the labels (:mod:`cropcore.labels`), extracts each labelled pixel's
monthly series through the crop-map path, splits the labels by parcel (train/validation/test, seeded, stratified
by class), normalises with the training split, replaces the default model's output layer
(``model.reset_head(num_classes)``) and trains it with :class:`~cropcore.training.module.CropModule`; then
scores it and a RandomForest on the held-out parcels, and writes ``CROPCORE_HOME/models/<name>.pt`` with the
user's legend. Nothing is written unless every step succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from plotly.colors import qualitative, sample_colorscale, unlabel_rgb
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch import nn
from torch.utils.data import DataLoader

from cropcore.data.points import PointDataset, PointSeries, norm_stats, prepare
from cropcore.errors import CheckpointError, ConfigError
from cropcore.labels import Labels, extract_pixels, read_labels, season_dates, split_by_parcel
from cropcore.labels.extract import labels_aoi
from cropcore.models import LegendEntry, ModelMeta, Normalisation, load_checkpoint, save_checkpoint, uses_location
from cropcore.models.checkpoint import list_checkpoints
from cropcore.pipeline import DEFAULT_MODEL
from cropcore.progress import Progress, silent, span
from cropcore.settings import home
from cropcore.training.datamodules import inverse_frequency
from cropcore.training.module import CropModule, fit_best
from cropcore.training.scoring import score_points
from cropcore.training.series import predict_series

DEFAULT_EPOCHS = 30
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


@dataclass(frozen=True)
class OwnModel:
    """What :func:`train_on_labels` wrote and measured (held-out reports as
    :func:`~cropcore.training.scoring.score_points` gives them)."""

    path: Path
    meta: ModelMeta
    network: dict[str, Any]  # the fine-tuned network on the held-out parcels
    random_forest: dict[str, Any]  # a RandomForest fitted on the same training pixels, same held-out parcels
    default: dict[str, Any]  # the default model: its own scores, and what it calls the held-out parcels
    sizes: dict[str, dict[str, int]]  # parcels and pixels per split
    bbox: tuple[float, float, float, float]  # the area the labels' pixels were loaded from (lon/lat)
    dates: tuple[date, date]  # first and last day of the season
    warnings: tuple[str, ...]
    seconds: float


def model_name(name: str | None, labels: str | Path, class_column: str, season: int) -> str:
    """``name``, or one made from the file, column and season; checked to be usable as a file name."""
    name = name or re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(labels).stem}_{class_column}_{season}").strip("_.")
    if not _NAME.fullmatch(name):
        raise ConfigError(f"model name {name!r}: use up to 80 letters, digits, '_', '-' or '.', starting with a "
                          "letter or digit")
    return name


def target_path(name: str, *, overwrite: bool = False) -> Path:
    """Where a user's model ``name`` goes (``CROPCORE_HOME/models/<name>.pt``), refusing taken names."""
    known = list_checkpoints()
    path = home() / "models" / f"{name}.pt"
    if name in known and known[name] != path:
        raise ConfigError(f"{name!r} is the name of a shipped model; choose another name")
    if path.exists() and not overwrite:
        raise ConfigError(f"a model named {name!r} exists ({path}); choose another name or overwrite it")
    return path


def class_colours(n: int) -> list[str]:
    """``n`` distinct colours (Plotly's Dark24 then Light24; a sampled Turbo scale beyond 48)."""
    palette = qualitative.Dark24 + qualitative.Light24
    if n <= len(palette):
        return palette[:n]
    return ["#{:02x}{:02x}{:02x}".format(*map(round, unlabel_rgb(c))) for c in sample_colorscale("Turbo", n)]


def _legend(names: tuple[str, ...], crop_classes: list[str] | None) -> tuple[LegendEntry, ...]:
    unknown = sorted(set(crop_classes or ()) - set(names))
    if unknown:
        raise ConfigError(f"crop classes {unknown} are not classes of the labels ({', '.join(names)})")
    colours = class_colours(len(names))
    return tuple(LegendEntry(i, n, colours[i], None if crop_classes is None else n in crop_classes)
                 for i, n in enumerate(names))


class LabelDataModule(pl.LightningDataModule):
    """The labelled pixels split by parcel (train/val/test masks); normalisation from the training split."""

    def __init__(self, series: PointSeries, masks: tuple[np.ndarray, ...], *, batch_size: int = 64) -> None:
        super().__init__()
        self.train, self.val, self.test = (series.subset(m) for m in masks)
        self.mean, self.std = norm_stats(self.train.x)
        self.batch_size = min(batch_size, len(self.train))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(PointDataset(self.train, self.mean, self.std), batch_size=self.batch_size, shuffle=True,
                          drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(PointDataset(self.val, self.mean, self.std), batch_size=256)

    def class_weights(self, num_classes: int) -> list[float]:
        """Inverse-frequency weights of the training pixels (clipped to [0.2, 5])."""
        return inverse_frequency(np.bincount(self.train.y, minlength=num_classes))

    def sizes(self) -> dict[str, dict[str, int]]:
        """Parcels and pixels per split."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        return {p: {"parcels": len(np.unique(s.sample_id)), "pixels": len(s)} for p, s in parts.items()}


class _EpochProgress(pl.Callback):
    def __init__(self, report: Progress, epochs: int) -> None:
        self.report, self.epochs = report, epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        f1 = trainer.callback_metrics.get("val_macro_f1")
        score = "" if f1 is None else f", validation macro-F1 {float(f1):.3f}"
        done = trainer.current_epoch + 1
        self.report(done / self.epochs, f"epoch {done}/{self.epochs}{score}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's banners (accelerators, tips) and notes that do not concern a user here, silenced."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=PossibleUserWarning)  # few batches, no loader workers: fine here
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def fine_tune(base: tuple[nn.Module, ModelMeta], dm: LabelDataModule, num_classes: int, *, epochs: int,
              lr: float = 1e-3, progress: Progress | None = None) -> CropModule:
    """Train ``base`` with a new ``num_classes`` head on ``dm``; the epoch with the best validation macro-F1."""
    net, meta = base
    if not hasattr(net, "reset_head"):
        raise CheckpointError(f"{meta.name} ({meta.architecture}) cannot be fine-tuned on new classes: it has no "
                              "reset_head(num_classes)")
    module = CropModule(meta.architecture, {**meta.model_kwargs, "num_classes": num_classes}, lr=lr,
                        batch_size=dm.batch_size, base_batch_size=dm.batch_size,
                        class_weights=dm.class_weights(num_classes), augment={"date_dropout": 0.1},
                        norm=(dm.mean, dm.std))
    net.reset_head(num_classes)
    module.net.load_state_dict(net.state_dict())
    if hasattr(module.net, "set_input_norm"):  # the base's weights brought its input statistics: use this split's
        module.net.set_input_norm(dm.mean, dm.std)
    with tempfile.TemporaryDirectory(prefix="cropcore-train-") as tmp, _quiet():
        module, _ = fit_best(module, dm, tmp, max_epochs=epochs, devices=1,
                             callbacks=[_EpochProgress(progress or silent, epochs)], enable_model_summary=False,
                             log_every_n_steps=1)
    return module.cpu().eval()


def _default_view(base: tuple[nn.Module, ModelMeta], test: PointSeries) -> dict[str, Any]:
    """The default model's own held-out scores, and the share of each user class it gives each of its classes."""
    net, meta = base
    x, mask = prepare(test, list(meta.norm.mean), list(meta.norm.std))
    probs = predict_series(net, x, mask, latlon=test.latlon if uses_location(meta.architecture) else None)
    called = pd.Categorical.from_codes(probs.argmax(1).numpy(), meta.class_names)
    truth = pd.Categorical.from_codes(test.y, test.class_names)
    table = pd.crosstab(truth, called, normalize="index", dropna=False).round(3)
    return {"name": meta.name, "metrics": dict(meta.metrics), "calls_test_pixels": table.to_dict(orient="index")}


def train_on_labels(
    labels: str | Path | Labels, class_column: str, season: int, *, catalog: str = "local",
    collections: list[str] | None = None, max_cloud: float | None = 80.0, name: str | None = None,
    base: str = DEFAULT_MODEL, crop_classes: list[str] | None = None, epochs: int = DEFAULT_EPOCHS,
    batch_size: int = 64, seed: int = 0, overwrite: bool = False, progress: Progress | None = None,
) -> OwnModel:
    """Fine-tune ``base`` on the labels of ``class_column`` for the season ending in ``season``; see the module.

    ``labels`` is a file, or :class:`~cropcore.labels.Labels` already read (their own class column is used);
    ``crop_classes`` marks which of the user's classes are crops (otherwise the legend leaves it unsaid).
    """
    t0 = time.perf_counter()
    report = progress or silent
    labels = labels if isinstance(labels, Labels) else read_labels(labels, class_column)
    path = target_path(model_name(name, labels.source, labels.class_column, season), overwrite=overwrite)
    legend = _legend(labels.class_names, crop_classes)
    net, meta = load_checkpoint(base)
    if not meta.is_pixel:
        raise ConfigError(f"{base} is a patch model; training on labels needs a pixel model")
    report(0.0, f"{labels.describe()}")
    pixels = extract_pixels(labels, meta, season, catalog=catalog, collections=collections, max_cloud=max_cloud,
                            seed=seed, progress=span(report, 0.0, 0.4))
    dm = LabelDataModule(pixels.series, split_by_parcel(pixels.series.sample_id, pixels.series.y, seed=seed),
                         batch_size=batch_size)
    k = len(labels.class_names)
    pl.seed_everything(seed, workers=True, verbose=False)
    module = fine_tune((net, meta), dm, k, epochs=epochs, progress=span(report, 0.4, 0.9, "training: "))

    report(0.9, "scoring the network and a RandomForest on the held-out parcels")
    crops = [c.id for c in legend if c.is_crop] or None
    scores, calibration = score_points(module.net, dm.train, dm.val, dm.test, mean=dm.mean, std=dm.std, crop=crops,
                                       seed=seed)
    default = _default_view(load_checkpoint(base), dm.test)
    season_text = f"{pixels.axis[0]:%b %Y} – {pixels.axis[-1]:%b %Y}"
    own = ModelMeta(
        name=path.stem, architecture=meta.architecture, kind=meta.kind,
        model_kwargs={**meta.model_kwargs, "num_classes": k}, bands=meta.bands, time_axis=meta.time_axis,
        norm=Normalisation(tuple(dm.mean), tuple(dm.std), meta.norm.units), legend=legend, data_kind="user_labels",
        training_data=(f"the user's labels {labels.source} (column {labels.class_column!r}), season {season_text}, "
                       f"catalog {pixels.catalog_url}; fine-tuned from {meta.name}; split by parcel, seed {seed}"),
        test_sample_ids=tuple(sorted(np.unique(dm.test.sample_id), key=int)), metrics=scores, calibration=calibration,
        extra={"fine_tuned_from": {"name": meta.name, "sha256": meta.sha256}, "split_sizes": dm.sizes()},
    )
    partial = path.with_suffix(".pt.partial")
    save_checkpoint(partial, module.net, own)
    partial.replace(path)
    report(1.0, f"saved {path.name}")
    return OwnModel(path, own, scores["network"], scores["random_forest"], default, dm.sizes(),
                    labels_aoi(labels).bounds, season_dates(meta, season), pixels.warnings,
                    round(time.perf_counter() - t0, 1))


def comparison(result: OwnModel) -> pd.DataFrame:
    """F1 per class, overall accuracy and macro-F1 of the network and the RandomForest on the held-out parcels."""
    net, rf = result.network, result.random_forest
    names = result.meta.class_names
    rows = [{"pixels": net["per_class"][n]["support"], "network": net["per_class"][n]["f1"],
             "RandomForest": rf["per_class"][n]["f1"]} for n in names]
    rows += [{"pixels": net["n"], "network": net[k], "RandomForest": rf[k]} for k in ("oa", "macro_f1")]
    return pd.DataFrame(rows, index=[*names, "overall accuracy", "macro-F1"])


def default_calls(result: OwnModel) -> pd.DataFrame:
    """Share of each of the user's classes (rows, held-out pixels) that the default model gives each of its own."""
    table = pd.DataFrame(result.default["calls_test_pixels"]).T
    return table.loc[:, table.sum() > 0]
