"""Tile-level scoring of an AOI with the shipped patch classifiers (:mod:`cropcore.patches.tiles`): the tile grid,
padding, band filling, and the demo area scored from the real embedded STAC API."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import box, shape

from cropcore.aoi import AOI
from cropcore.errors import ConfigError
from cropcore.inference.tiling import Tile
from cropcore.patches.data import BANDS, CLASSES19
from cropcore.patches.tiles import composite_scenes, cut_tiles, fill_sources, score_aoi, tile_grid
from cropcore.ui.search import DEMO_AOI

DEMO_DATES = ("2020-11-01", "2021-10-31")


def test_tile_grid_covers_the_raster_once_with_smaller_edge_tiles():
    tiles = tile_grid(250, 130)
    assert tiles[:3] == [Tile(0, 0, 120, 120), Tile(0, 120, 120, 10), Tile(120, 0, 120, 120)]
    assert tiles[-1] == Tile(240, 120, 10, 10)
    cover = np.zeros((250, 130), int)
    for t in tiles:
        cover[t.slices] += 1
    assert (cover == 1).all()
    assert tile_grid(40, 70) == [Tile(0, 0, 40, 70)]  # smaller than one tile: one tile
    with pytest.raises(ConfigError, match="empty"):
        tile_grid(0, 10)


def test_small_windows_are_padded_by_mirroring_their_own_pixels():
    image = np.arange(2 * 50 * 70, dtype=np.float32).reshape(2, 50, 70)
    (out,) = cut_tiles(image, [Tile(0, 0, 50, 70)])
    assert out.shape == (2, 120, 120)
    np.testing.assert_array_equal(out[:, :50, :70], image)
    np.testing.assert_array_equal(out[:, 50:100, :70], image[:, ::-1])  # mirrored below
    np.testing.assert_array_equal(out[:, :50, 70:120], image[:, :, 69:19:-1])  # mirrored right
    (edge,) = cut_tiles(np.ones((12, 130, 130), np.float32), [Tile(120, 120, 10, 10)])
    assert edge.shape == (12, 120, 120) and (edge == 1).all()


def test_missing_bands_come_from_their_spectral_neighbour():
    demo = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]  # the embedded catalog's scenes
    assert fill_sources(demo) == {"B01": "B02", "B8A": "B08", "B09": "B08"}
    assert fill_sources(list(BANDS)) == {}
    assert fill_sources([*demo, "B8A"])["B09"] == "B8A"
    with pytest.raises(ConfigError, match=r"lack the bands \['B04'\]"):
        fill_sources(["B02", "B03", "B08"])


def test_demo_area_is_one_padded_tile_scored_from_the_summer_composite(stac_api):
    scores = score_aoi(DEMO_AOI, *DEMO_DATES, catalog=stac_api, max_cloud=None)
    assert scores.shape == (106, 106) and scores.tiles == [Tile(0, 0, 106, 106)] and scores.padded
    assert scores.scenes == ["worldcereal-be-2021-06", "worldcereal-be-2021-07", "worldcereal-be-2021-08"]
    assert scores.filled == {"B01": "B02", "B8A": "B08", "B09": "B08"}
    assert 0 <= scores.agri[0] <= 1 and scores.labels.shape == (1, len(CLASSES19))
    assert scores.gate_model == "patch_cnnvit_agri" and scores.gate_threshold is not None
    west, south, east, north = scores.bounds[0]
    assert (east - west, north - south) == (1060.0, 1060.0)  # 106 px of 10 m
    tile, aoi = box(*scores.lonlat[0]), AOI.parse(DEMO_AOI).geometry
    assert tile.intersection(aoi).area > 0.95 * aoi.area
    table = scores.table()
    assert list(table.columns) == ["tile", "size_px", "agricultural", "data_share", "top_labels"]
    assert table.tile[0] == "r0c0" and table.size_px[0] == "106 x 106" and table.top_labels[0].count(";") == 2
    (feature,) = scores.geojson()["features"]
    assert feature["properties"]["agri"] == round(float(scores.agri[0]), 3)
    assert shape(feature["geometry"]).equals(tile)


def test_composite_falls_back_to_the_whole_range_without_summer_scenes(stac_api):
    from cropcore.stac.catalog import search_items

    items = search_items(DEMO_AOI, DEMO_DATES, catalog=stac_api, max_cloud=None).items
    assert [i.id for i in composite_scenes(items, "2021-02-01", "2021-04-30")] == [
        "worldcereal-be-2021-02", "worldcereal-be-2021-03", "worldcereal-be-2021-04"]
    assert len(composite_scenes(items, *DEMO_DATES)) == 3


def layers(m) -> dict[str, object]:
    return {getattr(child, "layer_name", None): child for child in m._children.values()}


def test_crop_map_page_shows_the_tile_layer_and_table(stac_api, monkeypatch):
    import folium
    from test_ui_pages import CROP_MAP, FakeMap, messages, page, run_button

    from cropcore.ui import tiles as ui_tiles

    fake = FakeMap()
    at = run_button(page(CROP_MAP, monkeypatch, fake)).click().run()
    assert not at.exception and not at.error, messages(at.error)
    assert ui_tiles.LAYER not in layers(fake.maps[-1]) and not at.dataframe  # off by default
    at = at.toggle(key=ui_tiles.TOGGLE).set_value(True).run()
    assert not at.exception and not at.error and not at.warning, messages(at.warning)
    group = layers(fake.maps[-1])[ui_tiles.LAYER]
    (geojson,) = [c for c in group._children.values() if isinstance(c, folium.GeoJson)]
    (feature,) = geojson.data["features"]
    assert 0 <= feature["properties"]["agri"] <= 1 and feature["properties"]["top_labels"]
    (tooltip,) = [c for c in geojson._children.values() if isinstance(c, folium.GeoJsonTooltip)]
    assert tooltip.fields == ["tile", "agri", "top_labels"] and "agricultural (probability)" in tooltip.aliases
    table = at.dataframe[0].value
    assert table.tile.tolist() == ["r0c0"] and table.top_labels[0] == feature["properties"]["top_labels"]
    captions = messages(at.caption)
    assert "only 124 BigEarthNet patches" in captions and "smaller than one tile" in captions
    assert "B01 from B02" in captions


def test_tile_layer_without_the_bands_is_a_warning_not_a_crash(stac_api, monkeypatch):
    from test_ui_pages import CROP_MAP, FakeMap, messages, page, run_button

    from cropcore.ui import tiles as ui_tiles

    def no_bands(*args, **kwargs):
        fill_sources(["B02", "B03", "B08"])  # scenes without B04: the real error

    monkeypatch.setattr(ui_tiles, "score_aoi", no_bands)
    ui_tiles.tile_scores.clear()
    fake = FakeMap()
    at = run_button(page(CROP_MAP, monkeypatch, fake, **{ui_tiles.TOGGLE: True})).click().run()
    assert not at.exception and not at.error, messages(at.error)
    assert "No agricultural tiles for this area" in messages(at.warning) and "B04" in messages(at.warning)
    assert ui_tiles.LAYER not in layers(fake.maps[-1])
    ui_tiles.tile_scores.clear()
