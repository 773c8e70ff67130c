"""AOI parsing: every accepted form gives the same polygon; bad AOIs get clear errors."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shapely.geometry import Point, Polygon, box, mapping

from cropcore.aoi import AOI, geodesic_area_km2
from cropcore.errors import InvalidAOIError

BBOX = (5.322, 50.630, 5.330, 50.636)


@pytest.mark.parametrize(
    "aoi",
    [
        BBOX,
        list(BBOX),
        box(*BBOX),
        mapping(box(*BBOX)),
        {"type": "Feature", "properties": {}, "geometry": mapping(box(*BBOX))},
        {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": mapping(box(*BBOX))}]},
        json.dumps(mapping(box(*BBOX))),
    ],
    ids=["tuple", "list", "shapely", "geometry", "feature", "collection", "json-text"],
)
def test_every_form_gives_the_same_polygon(aoi):
    assert AOI.parse(aoi).geometry.equals(box(*BBOX))


@pytest.mark.parametrize(
    ("aoi", "message"),
    [
        (Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)]), "invalid"),  # bow-tie: self-intersecting
        (Polygon(), "empty"),
        (Point(5, 50), "no area"),
        ((5.0, 50.0, 5.0, 50.0), "zero area"),
        ((-200.0, 10.0, -190.0, 11.0), "outside longitude"),
        ((5.0, 95.0, 6.0, 96.0), "outside longitude"),
        ((170.0, 10.0, -170.0, 11.0), "antimeridian"),
        ((5.0, 51.0, 6.0, 50.0), "swap"),
        ((5.0, 50.0, 6.0), "bbox"),
        ("{not json", "not valid JSON"),
        ({"type": "FeatureCollection", "features": []}, "no features"),
        ({"type": "Polygon", "coordinates": "nonsense"}, "GeoJSON"),
        (42, "unsupported"),
    ],
)
def test_bad_aois_are_refused_with_a_reason(aoi, message):
    with pytest.raises(InvalidAOIError, match=message):
        AOI.parse(aoi)


def test_size_limit_is_configurable(monkeypatch):
    big = (4.0, 50.0, 6.0, 51.0)  # about 15,700 km²
    with pytest.raises(InvalidAOIError, match="more than the limit"):
        AOI.parse(big)
    monkeypatch.setenv("CROPCORE_MAX_AOI_KM2", "20000")
    assert AOI.parse(big).geometry.bounds == big
    with pytest.raises(InvalidAOIError, match="more than the limit of 1 km²"):
        AOI.parse(big, max_area_km2=1)


def test_geodesic_area_of_one_degree_at_the_equator():
    # 1° x 1° at the equator is about 12,309 km² on the WGS84 ellipsoid
    assert geodesic_area_km2(box(0, 0, 1, 1)) == pytest.approx(12309, rel=1e-3)


@given(
    west=st.floats(-179.0, 178.0), south=st.floats(-80.0, 79.0),
    width=st.floats(0.001, 0.5), height=st.floats(0.001, 0.5),
)
def test_any_small_bbox_round_trips(west, south, width, height):
    bbox = (west, south, west + width, south + height)
    geom = AOI.parse(bbox, max_area_km2=1e7).geometry
    assert geom.bounds == pytest.approx(bbox)
    assert AOI.parse(mapping(geom), max_area_km2=1e7).geometry.equals(geom)


def test_an_aoi_is_parsed_once_and_knows_its_area():
    aoi = AOI.parse(BBOX)
    assert AOI.parse(aoi) is aoi and AOI.parse(aoi).bounds == BBOX
    assert aoi.area_km2 == pytest.approx(geodesic_area_km2(box(*BBOX)))
    assert aoi.feature_collection()["features"][0]["geometry"] == mapping(box(*BBOX))
    with pytest.raises(InvalidAOIError, match="more than the limit of 0 km²"):
        AOI.parse(aoi, max_area_km2=1e-3)  # an explicit limit checks a parsed AOI again
