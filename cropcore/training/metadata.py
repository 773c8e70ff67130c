"""The :class:`~cropcore.models.ModelMeta` written with trained weights: legend, bands, time axis,
normalisation, held-out ids and headline metrics of the run."""

from __future__ import annotations

from typing import Any

import numpy as np

from cropcore.data.pastis import PASTIS_BANDS, PASTIS_CLASSES
from cropcore.legend import CROP_LEGEND
from cropcore.models import Calibration, LegendEntry, ModelMeta, Normalisation, TimeAxis, model_kind
from cropcore.training.config import TrainConfig
from cropcore.training.datamodules import ComposedDataModule, PastisDataModule, PointDataModule

UNITS = "reflectance (DN / 10000)"
GREY = "#808080"
COMPOSED_DATA = ("semi-synthetic: Voronoi field layouts filled with real labelled WorldCereal series "
                 "(cropcore.data.composed); metrics.network is on real held-out points (uniform patches), "
                 "metrics.network_patches on held-out composed patches")


def _headline(results: dict[str, Any], runs: tuple[str, ...]) -> dict[str, Any]:
    return {k: {m: results[k][m] for m in ("oa", "macro_f1")} for k in runs}


def checkpoint_meta(config: TrainConfig, dm: PointDataModule, results: dict[str, Any],
                    calibration: Calibration | None = None) -> ModelMeta:
    """Metadata of a run on point series (pixel models) or patches composed from them, with the network's
    calibration and its reliability on the test split (``metrics["calibration"]``)."""
    worldcereal = config.data["kind"] == "worldcereal"
    if worldcereal:
        legend = tuple(LegendEntry(i, c.name, c.color, c.is_crop) for i, c in enumerate(CROP_LEGEND))
    else:
        legend = tuple(LegendEntry(i, n, GREY) for i, n in enumerate(dm.train.class_names))
    composed = isinstance(dm, ComposedDataModule)
    runs = ("network", "random_forest", "network_patches") if composed else ("network", "random_forest")
    held_out = () if "test_path" in config.data else tuple(sorted(map(str, np.unique(dm.test.sample_id))))
    return ModelMeta(
        name=config.name,
        architecture=config.model,
        kind=model_kind(config.model),
        model_kwargs=config.model_kwargs,
        bands=tuple(dm.train.bands),
        time_axis=TimeAxis("season_months" if worldcereal else "dates", tuple(dm.train.time_axis)),
        norm=Normalisation(tuple(dm.mean), tuple(dm.std), UNITS),
        legend=legend,
        data_kind=config.data["kind"],
        test_sample_ids=held_out,
        metrics={**_headline(results, runs), "calibration": {
            k: results["network"][k] for k in ("ece_raw", "ece", "reliability") if k in results["network"]}},
        calibration=calibration,
        patch_size=dm.hparams.size if composed else None,
        training_data=COMPOSED_DATA if composed else None,
    )


def pastis_meta(config: TrainConfig, dm: PastisDataModule, results: dict[str, Any]) -> ModelMeta:
    """Metadata of a PASTIS run; ``norm`` converted to reflectance (PASTIS stores DN)."""
    k = config.model_kwargs["num_classes"]
    return ModelMeta(
        name=config.name,
        architecture=config.model,
        kind=model_kind(config.model),
        model_kwargs=config.model_kwargs,
        bands=PASTIS_BANDS,
        time_axis=TimeAxis("dates", (), "any dates; padded dates are masked"),
        norm=Normalisation(tuple((dm.train_set.mean / 1e4).tolist()), tuple((dm.train_set.std / 1e4).tolist()),
                           UNITS),
        legend=tuple(LegendEntry(i, n, GREY) for i, n in enumerate(PASTIS_CLASSES[:k])),
        data_kind="pastis",
        test_fold=dm.hparams.test_fold,
        metrics=_headline(results, ("network_patches",)),
    )
