"""Training and evaluation: configs, data modules, the Lightning module, :func:`run` and checkpoint scoring.

Inference does not need this package; it loads checkpoints through :mod:`cropcore.models`.
"""

from cropcore.training.config import TrainConfig, load_config
from cropcore.training.datamodules import ComposedDataModule, PastisDataModule, PointDataModule, datamodule
from cropcore.training.evaluation import evaluate_file
from cropcore.training.metrics import classification_report, format_report
from cropcore.training.module import CropModule
from cropcore.training.run import run
from cropcore.training.series import predict_series

__all__ = [
    "ComposedDataModule",
    "CropModule",
    "PastisDataModule",
    "PointDataModule",
    "TrainConfig",
    "classification_report",
    "datamodule",
    "evaluate_file",
    "format_report",
    "load_config",
    "predict_series",
    "run",
]
