"""Inference: options (:mod:`.options`), devices and workers (:mod:`.devices`), the lazy chunk reader
(:mod:`.reader`), tiling and blending (:mod:`.tiling`), where the map goes (:mod:`.sinks`) and
:func:`predict_map` (:mod:`.predict`).

The options are imported at once; the rest (which imports torch) when first used, so reading the options,
e.g. for the CLI's defaults, stays light.
"""

from importlib import import_module
from typing import Any

from cropcore.inference.options import CHUNK_ROWS, NODATA, UNCERTAIN, InferenceOptions, cube_chunks

_LAZY = {"predict_map": "predict", "Runner": "devices", "resolve_devices": "devices", "WindowReader": "reader",
         "GeoTiffSink": "sinks", "ArraySink": "sinks", "Decision": "calibrate", "with_min_confidence": "calibrate"}

__all__ = ["CHUNK_ROWS", "NODATA", "UNCERTAIN", "InferenceOptions", "cube_chunks", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"cropcore.inference.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cropcore.inference' has no attribute {name!r}")
