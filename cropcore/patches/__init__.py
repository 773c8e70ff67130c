"""Single-date Sentinel-2 patch classifiers (BigEarthNet multi-label, agricultural / non-agricultural).

Kept apart from the time-series crop models of :mod:`cropcore.models`: own registry
(:mod:`~cropcore.patches.registry`), data (:mod:`~cropcore.patches.data`, :mod:`~cropcore.patches.stream`),
splits by place (:mod:`~cropcore.patches.splits`), training (:mod:`~cropcore.patches.train`), metrics and
checkpoints. To score patches: ``PatchClassifier("patch_smallcnn_agri").score(x)`` with ``x`` reflectance
(12, H, W) or (N, 12, H, W) in bands :data:`~cropcore.patches.data.BANDS`.
"""

from cropcore.patches.data import BANDS, CLASSES19, PatchSet, read_folders, read_npz, read_source
from cropcore.patches.predict import PatchClassifier, PatchScores
from cropcore.patches.registry import build_patch_model, list_patch_models

__all__ = ["BANDS", "CLASSES19", "PatchClassifier", "PatchScores", "PatchSet", "build_patch_model",
           "list_patch_models", "read_folders", "read_npz", "read_source"]
