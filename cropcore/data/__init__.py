"""Datasets: WorldCereal and dl4sits point time series, PASTIS-format and composed (semi-synthetic) patches,
and a sharded streaming dataset for data larger than memory."""

from cropcore.data.belgium import read_belgium_2021
from cropcore.data.composed import ComposedPatches, uniform_patches, voronoi_layout
from cropcore.data.dl4sits import read_dl4sits
from cropcore.data.pastis import PastisDataset, collate_patches, fold_split
from cropcore.data.points import PointDataset, PointSeries, concat, prepare, split_by_sample
from cropcore.data.streaming import ShardedStream
from cropcore.data.worldcereal import read_worldcereal

__all__ = [
    "ComposedPatches",
    "PastisDataset",
    "PointDataset",
    "PointSeries",
    "ShardedStream",
    "collate_patches",
    "concat",
    "fold_split",
    "prepare",
    "read_belgium_2021",
    "read_dl4sits",
    "read_worldcereal",
    "split_by_sample",
    "uniform_patches",
    "voronoi_layout",
]
