"""The area of interest: parsed once, at each boundary (CLI, dashboard, library entry points), into an :class:`AOI`.

An :class:`AOI` holds a valid, non-empty (Multi)Polygon in lon/lat; the rest of the code takes it as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import shapely
from pyproj import Geod
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from cropcore.errors import InvalidAOIError
from cropcore.settings import max_aoi_km2


@dataclass(frozen=True)
class AOI:
    """A validated area of interest; make one with :meth:`parse`."""

    geometry: BaseGeometry

    @classmethod
    def parse(cls, aoi: AOILike, *, max_area_km2: float | None = None) -> AOI:
        """``aoi`` as an :class:`AOI`, or :class:`InvalidAOIError` saying what is wrong and how to fix it.

        Accepts an :class:`AOI` (returned as it is unless ``max_area_km2`` asks for a new check), a shapely
        geometry, a GeoJSON Geometry/Feature/FeatureCollection (dict or JSON text) or a bbox ``(west, south,
        east, north)``. The area limit defaults to :func:`cropcore.settings.max_aoi_km2`.
        """
        if isinstance(aoi, AOI):
            if max_area_km2 is None:
                return aoi
            aoi = aoi.geometry
        return cls(_validated(aoi, max_area_km2))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` in degrees."""
        return self.geometry.bounds

    @property
    def area_km2(self) -> float:
        return geodesic_area_km2(self.geometry)

    @property
    def __geo_interface__(self) -> dict[str, Any]:
        return mapping(self.geometry)

    def feature_collection(self, name: str = "area of interest") -> dict[str, Any]:
        """The AOI as a GeoJSON FeatureCollection of one feature."""
        return {"type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {"name": name}, "geometry": mapping(self.geometry)}]}


AOILike = AOI | BaseGeometry | Mapping[str, Any] | Sequence[float] | str

_GEOD = Geod(ellps="WGS84")
#: Largest GeoJSON text accepted (1 MiB: thousands of field vertices; larger files are usually whole regions).
MAX_GEOJSON_BYTES = 2**20


def _from_geojson(obj: Mapping[str, Any]) -> BaseGeometry:
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features") or []
        if not features:
            raise InvalidAOIError("the GeoJSON FeatureCollection has no features: draw or upload a polygon")
        return shapely.union_all([_from_geojson(f) for f in features])
    if kind == "Feature":
        if not obj.get("geometry"):
            raise InvalidAOIError("the GeoJSON Feature has no geometry")
        return _from_geojson(obj["geometry"])
    try:
        return shape(obj)
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as exc:
        raise InvalidAOIError(f"not a GeoJSON geometry ({exc}); give a Polygon, Feature or bbox") from None


def _from_bbox(values: Sequence[float]) -> BaseGeometry:
    try:
        west, south, east, north = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InvalidAOIError(f"a bbox is four numbers (west, south, east, north), got {values!r}") from None
    if west > east:
        raise InvalidAOIError(
            f"bbox west {west} > east {east}: it crosses the antimeridian or is reversed; "
            "split it at 180° into two searches"
        )
    if south > north:
        raise InvalidAOIError(f"bbox south {south} > north {north}: swap them")
    if west == east or south == north:
        raise InvalidAOIError(f"bbox {tuple(values)} has zero area: give two different corners")
    return box(west, south, east, north)


def geodesic_area_km2(geom: BaseGeometry) -> float:
    """Area of a lon/lat geometry on the WGS84 ellipsoid, in km²."""
    return abs(_GEOD.geometry_area_perimeter(geom)[0]) / 1e6


def _validated(aoi: AOILike, max_area_km2: float | None) -> BaseGeometry:
    """``aoi`` as a valid, non-empty (Multi)Polygon in lon/lat within the area limit."""
    if isinstance(aoi, str):
        if len(aoi) > MAX_GEOJSON_BYTES:
            raise InvalidAOIError(f"the AOI GeoJSON is {len(aoi) / 2**20:.1f} MB, more than the limit of "
                                  f"{MAX_GEOJSON_BYTES / 2**20:.0f} MB: simplify the polygon or keep only the area "
                                  "to map")
        try:
            aoi = json.loads(aoi)
        except json.JSONDecodeError as exc:
            raise InvalidAOIError(f"the AOI is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if isinstance(aoi, BaseGeometry):
        geom = aoi
    elif isinstance(aoi, Mapping):
        geom = _from_geojson(aoi)
    elif isinstance(aoi, Sequence) and len(aoi) == 4:
        geom = _from_bbox(aoi)
    else:
        raise InvalidAOIError(f"unsupported AOI {type(aoi).__name__}: give GeoJSON, a shapely geometry or a bbox")
    if geom.is_empty:
        raise InvalidAOIError("the AOI is empty: draw a polygon or rectangle")
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidAOIError(f"the AOI is a {geom.geom_type} with no area: draw a polygon or rectangle")
    if not geom.is_valid:
        raise InvalidAOIError(f"the AOI polygon is invalid ({explain_validity(geom)}): redraw it without "
                              "crossing edges")
    west, south, east, north = geom.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise InvalidAOIError(
            f"the AOI bounds {geom.bounds} are outside longitude [-180, 180] / latitude [-90, 90]; "
            "coordinates must be lon/lat (EPSG:4326) in that order"
        )
    if east - west > 180:
        raise InvalidAOIError("the AOI spans more than 180° of longitude: it probably crosses the antimeridian; "
                              "split it at 180° into two searches")
    area = geodesic_area_km2(geom)
    if area <= 0:
        raise InvalidAOIError("the AOI has zero area: draw a polygon or rectangle")
    limit = max_aoi_km2() if max_area_km2 is None else max_area_km2
    if area > limit:
        raise InvalidAOIError(f"the AOI covers {area:,.0f} km², more than the limit of {limit:,.0f} km²: "
                              "draw a smaller area (or raise CROPCORE_MAX_AOI_KM2)")
    return geom
