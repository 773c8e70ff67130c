"""Datacubes: lazy loading with odc-stac (:mod:`.load`), preprocessing (:mod:`.preprocess`: reflectance, cloud
masking, composites, gap filling), spectral indices (:mod:`.indices`), model-input normalisation
(:mod:`.normalise`) and where dask computes (:mod:`.dask_setup`)."""

from cropcore.cube.assets import AssetFailure
from cropcore.cube.dask_setup import compute
from cropcore.cube.indices import INDICES, add_indices, spectral_index
from cropcore.cube.load import LoadResult, load_cube
from cropcore.cube.normalise import NormStats
from cropcore.cube.preprocess import preprocess, time_axis

__all__ = [
    "INDICES",
    "AssetFailure",
    "LoadResult",
    "NormStats",
    "add_indices",
    "compute",
    "load_cube",
    "preprocess",
    "spectral_index",
    "time_axis",
]
