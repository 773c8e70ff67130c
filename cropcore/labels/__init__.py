"""A user's own labels: read and checked (:mod:`~cropcore.labels.read`), their pixels' series extracted through
the crop-map path (:mod:`~cropcore.labels.extract`) and split by parcel (:mod:`~cropcore.labels.split`)."""

from cropcore.labels.extract import LabelledPixels, extract_pixels, season_dates
from cropcore.labels.read import Labels, label_columns, labels_from_frame, read_frame, read_labels
from cropcore.labels.split import split_by_parcel

__all__ = [
    "LabelledPixels",
    "Labels",
    "extract_pixels",
    "label_columns",
    "labels_from_frame",
    "read_frame",
    "read_labels",
    "season_dates",
    "split_by_parcel",
]
