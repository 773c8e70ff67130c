"""Models: the registry (``build_model``, ``list_models``, ``model_kind``), typed checkpoint metadata and
safe checkpoints (``list_checkpoints``: the shipped ones, then the user's own)."""

from cropcore.models.agrunet import AgrUNet
from cropcore.models.checkpoint import list_checkpoints, load_checkpoint, resolve, save_checkpoint
from cropcore.models.meta import Calibration, LegendEntry, ModelMeta, Normalisation, TimeAxis
from cropcore.models.presto import PrestoClassifier
from cropcore.models.registry import build_model, list_models, model_kind, uses_location
from cropcore.models.tempcnn import TempCNN, predict_cube

__all__ = [
    "AgrUNet",
    "Calibration",
    "LegendEntry",
    "ModelMeta",
    "Normalisation",
    "PrestoClassifier",
    "TempCNN",
    "TimeAxis",
    "build_model",
    "list_checkpoints",
    "list_models",
    "load_checkpoint",
    "model_kind",
    "predict_cube",
    "resolve",
    "save_checkpoint",
    "uses_location",
]
