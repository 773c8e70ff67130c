"""A user's label file (GeoJSON, GeoPackage or GeoParquet; points or polygons) read and checked.

Every problem is reported with what to do about it: an unreadable file, an unknown class column (the columns are
listed), no CRS, coordinates that do not fit the CRS, empty, invalid or unsupported geometries (dropped with a
warning, an error when none is left) and classes with too few labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from cropcore.errors import DatasetFormatError

#: File suffix -> format name.
FORMATS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GeoPackage", ".parquet": "GeoParquet",
           ".geoparquet": "GeoParquet"}
#: Geometry types a label may have.
SUPPORTED = ("Point", "MultiPoint", "Polygon", "MultiPolygon")
#: Fewest labels (points or polygons) per class: at least three to train on, one to validate, one to test.
MIN_PER_CLASS = 5
CLASS_ID, PARCEL = "class_id", "parcel"


@dataclass(frozen=True)
class Labels:
    """Checked labels in lon/lat (EPSG:4326), one row per usable feature of the file.

    ``frame`` holds the geometry, ``class_id`` (index into ``class_names``) and ``parcel``, the feature's
    number in the file (1-based), which keeps a polygon's pixels together when data are split.
    """

    frame: gpd.GeoDataFrame
    class_names: tuple[str, ...]
    source: str
    class_column: str
    warnings: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Labels (features) per class."""
        counts = np.bincount(self.frame[CLASS_ID], minlength=len(self.class_names))
        return dict(zip(self.class_names, counts.tolist(), strict=True))

    def describe(self) -> str:
        """One line: how many points and polygons, and how many classes."""
        kinds = self.frame.geometry.geom_type.str.replace("Multi", "").value_counts()
        parts = [f"{n} {kind.lower()}{'s' if n > 1 else ''}" for kind, n in kinds.items()]
        return f"{' and '.join(parts)} in {len(self.class_names)} classes ({self.source}, column {self.class_column!r})"


def read_frame(path: str | Path, *, name: str | None = None) -> gpd.GeoDataFrame:
    """Read a label file into a GeoDataFrame; ``name`` is what messages call it (default: the file name)."""
    path = Path(path)
    name = name or path.name
    fmt = FORMATS.get(Path(name).suffix.lower()) or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DatasetFormatError(f"{name}: unsupported label file type; give a GeoJSON (.geojson), GeoPackage "
                                 "(.gpkg) or GeoParquet (.parquet) file of points or polygons")
    if not path.is_file():
        raise DatasetFormatError(f"no label file at {path}")
    try:
        if fmt == "GeoParquet":
            return gpd.read_parquet(path)
        return gpd.read_file(path)
    except (OSError, ValueError, RuntimeError, pyogrio.errors.DataSourceError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DatasetFormatError(f"{name} cannot be read as {fmt}: {reason}. Check that it is a valid {fmt} file "
                                 "(open it in QGIS) or export it again") from None


def label_columns(frame: gpd.GeoDataFrame) -> list[str]:
    """The columns that may hold the class (every column but the geometry)."""
    return [str(c) for c in frame.columns if c != frame.geometry.name]


def count(n: int, noun: str) -> str:
    """``1 feature``, ``2 features``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def listed(numbers: Sequence[object], limit: int = 5) -> str:
    """Feature numbers for a message: ``feature 4``, ``features 4, 9, 17 and 3 more``."""
    shown = ", ".join(str(n) for n in list(numbers)[:limit])
    more = f" and {len(numbers) - limit} more" if len(numbers) > limit else ""
    return f"feature{'' if len(numbers) == 1 else 's'} {shown}{more}"


def _class_column(frame: gpd.GeoDataFrame, column: str, name: str) -> pd.Series:
    columns = label_columns(frame)
    if column not in columns:
        close = [c for c in columns if c.lower() == column.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DatasetFormatError(f"{name} has no column {column!r}{hint}; its columns are: "
                                 f"{', '.join(columns) or 'none besides the geometry'}")
    values = frame[column]
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():  # integer codes with gaps
        values = values.astype("Int64")
    return values.where(values.isna(), values.astype(str).str.strip()).replace("", None)


def _usable_geometries(frame: gpd.GeoDataFrame, name: str, warnings: list[str]) -> pd.Series:
    """A mask of the features with a non-empty, valid point or polygon geometry; the others are reported."""
    geom = frame.geometry
    empty = geom.isna() | geom.is_empty
    kind = geom.geom_type
    unsupported = ~empty & ~kind.isin(SUPPORTED)
    invalid = ~empty & ~unsupported & ~geom.is_valid
    keep = ~(empty | unsupported | invalid)
    problems = []
    if empty.any():
        problems.append(f"{int(empty.sum())} with an empty geometry ({listed(frame.index[empty] + 1)})")
    if unsupported.any():
        types = ", ".join(sorted(set(kind[unsupported])))
        problems.append(f"{int(unsupported.sum())} of type {types}, neither point nor polygon "
                        f"({listed(frame.index[unsupported] + 1)})")
    if invalid.any():
        first = frame.index[invalid][0]
        reason = shapely.is_valid_reason(geom.loc[first])
        problems.append(f"{int(invalid.sum())} invalid ({listed(frame.index[invalid] + 1)}; feature "
                        f"{first + 1}: {reason}; QGIS 'Fix geometries' repairs them)")
    if problems and not keep.any():
        raise DatasetFormatError(f"{name} has no usable geometry: all {len(frame)} features are unusable: "
                                 f"{'; '.join(problems)}")
    if problems:
        warnings.append(f"left out {int((~keep).sum())} of {count(len(frame), 'feature')}: {'; '.join(problems)}")
    return keep


def _in_lonlat(frame: gpd.GeoDataFrame, name: str) -> gpd.GeoDataFrame:
    if frame.crs is None:
        raise DatasetFormatError(f"{name} has no coordinate reference system (CRS): assign the one its "
                                 "coordinates are in (QGIS: Layer > Set Layer CRS, then export; geopandas: "
                                 "frame.set_crs('EPSG:...')) and save it again")
    lonlat = frame.to_crs(4326)
    west, south, east, north = lonlat.total_bounds
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        x, y = frame.geometry.iloc[0].representative_point().coords[0]
        raise DatasetFormatError(
            f"{name}: coordinates such as ({x:.10g}, {y:.10g}) do not fit its CRS {frame.crs.to_string()}; the file "
            "says one CRS but holds coordinates of another (GeoJSON must be longitude/latitude, RFC 7946): "
            "export it again with the right CRS, or as a GeoPackage, which keeps its own")
    return lonlat


def check_class_counts(counts: dict[str, int], name: str, *, after: str = "") -> None:
    """Raise :class:`DatasetFormatError` naming the classes with fewer than :data:`MIN_PER_CLASS` labels."""
    if len(counts) < 2:
        raise DatasetFormatError(f"{name}: only one class ({', '.join(counts)}){after}; a classifier needs at "
                                 "least two: add labels of other classes")
    few = {c: n for c, n in counts.items() if n < MIN_PER_CLASS}
    if few:
        ordered = sorted(few.items(), key=lambda kv: kv[1])
        classes = ", ".join(f"{c!r} ({n})" for c, n in ordered[:8]) + (f" and {len(few) - 8} more" if len(few) > 8
                                                                         else "")
        raise DatasetFormatError(
            f"{name}: too few labels{after} for {len(few)} class{'es' if len(few) > 1 else ''}: {classes}; each "
            f"class needs at least {MIN_PER_CLASS} points or polygons (to train on, validate and test with, "
            "polygon by polygon): add labels, merge these classes into others, or remove their rows")


def labels_from_frame(frame: gpd.GeoDataFrame, class_column: str, *, name: str) -> Labels:
    """Check ``frame`` and keep its usable features (see :func:`read_labels`)."""
    if frame.empty:
        raise DatasetFormatError(f"{name} holds no features: add labelled points or polygons")
    frame = frame.reset_index(drop=True)
    warnings: list[str] = []
    classes = _class_column(frame, class_column, name)
    unlabelled = classes.isna()
    if unlabelled.all():
        raise DatasetFormatError(f"{name}: column {class_column!r} is empty in every feature; choose the column "
                                 f"that holds the classes ({', '.join(label_columns(frame))})")
    if unlabelled.any():
        warnings.append(f"left out {count(int(unlabelled.sum()), 'feature')} without a value in {class_column!r} "
                        f"({listed(frame.index[unlabelled] + 1)})")
    keep = _usable_geometries(frame, name, warnings) & ~unlabelled
    if not keep.any():
        raise DatasetFormatError(f"{name}: no feature has both a usable geometry and a class in {class_column!r}")
    lonlat = _in_lonlat(frame[keep], name)
    names = tuple(sorted(set(classes[keep])))
    out = gpd.GeoDataFrame({CLASS_ID: classes[keep].map({c: i for i, c in enumerate(names)}).astype(int),
                            PARCEL: (lonlat.index + 1).astype(str)}, geometry=lonlat.geometry.values,
                           crs=4326)
    labels = Labels(out.reset_index(drop=True), names, name, class_column, tuple(warnings))
    check_class_counts(labels.counts(), name)
    return labels


def read_labels(path: str | Path, class_column: str, *, name: str | None = None) -> Labels:
    """Read and check a label file: :func:`read_frame`, then :func:`labels_from_frame`.

    Raises :class:`~cropcore.errors.DatasetFormatError` saying what is wrong and what to do; problems that
    leave usable labels (empty or invalid geometries, features without a class) are in ``Labels.warnings``.
    """
    name = name or Path(path).name
    return labels_from_frame(read_frame(path, name=name), class_column, name=name)

