"""Tiling and blending: stitch(tiles(x)) == x for any shape, tile and overlap; memory stays a band."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cropcore.errors import ConfigError
from cropcore.tiling import RowBlender, blend_weights, plan_tiles, tile_origins


@st.composite
def layouts(draw):
    tile = draw(st.integers(2, 40))
    overlap = draw(st.integers(0, tile - 1))
    return draw(st.integers(1, 120)), draw(st.integers(1, 120)), tile, overlap


@given(layouts())
def test_tiles_cover_the_raster_within_bounds(layout):
    height, width, tile, overlap = layout
    cover = np.zeros((height, width), dtype=int)
    for t in plan_tiles(height, width, tile=tile, overlap=overlap):
        assert 0 <= t.row and t.row + t.height <= height and 0 <= t.col and t.col + t.width <= width
        assert t.height == min(tile, height) and t.width == min(tile, width)
        cover[t.slices] += 1
    assert cover.min() >= 1


@settings(max_examples=60, deadline=None)
@given(layouts(), st.integers(1, 3))
def test_stitching_tiles_of_x_gives_back_x(layout, bands):
    height, width, tile, overlap = layout
    x = np.random.default_rng(0).normal(size=(bands, height, width)).astype(np.float32)
    out = np.full_like(x, np.nan)
    emitted = []

    def emit(row0, block):
        emitted.append((row0, block.shape[1]))
        out[:, row0:row0 + block.shape[1]] = block

    blender = RowBlender(bands, height, width, tile=tile, overlap=overlap, emit=emit)
    for t in blender.tiles:
        blender.add(t, x[(slice(None), *t.slices)])
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-5)
    rows = [r for r, _ in emitted]
    assert rows == sorted(rows) and sum(n for _, n in emitted) == height  # each row emitted once, in order


def test_blending_removes_seams_between_disagreeing_tiles():
    # two tiles that predict constants 0 and 1: the overlap becomes a smooth ramp, not a step
    out = np.zeros((1, 4, 12), dtype=np.float32)

    def emit(row0, block):
        out[:, row0:row0 + block.shape[1]] = block

    blender = RowBlender(1, 4, 12, tile=8, overlap=4, emit=emit)
    first, second = blender.tiles
    blender.add(first, np.zeros((1, 4, 8)))
    blender.add(second, np.ones((1, 4, 8)))
    row = out[0, 0]
    assert row[0] == 0 and row[-1] == 1
    assert np.all(np.diff(row) >= 0) and np.max(np.diff(row)) < 0.5


def test_accumulator_holds_one_band_of_rows():
    sizes = []
    blender = RowBlender(2, 1000, 50, tile=20, overlap=4, emit=lambda r, b: sizes.append(b.shape[1]))
    peak = 0
    for t in blender.tiles:
        blender.add(t, np.ones((2, t.height, t.width)))
        peak = max(peak, blender._wsum.shape[0])
    assert peak <= 20 and sum(sizes) == 1000


def test_bad_arguments():
    with pytest.raises(ConfigError):
        tile_origins(10, 4, 4)
    blender = RowBlender(1, 10, 10, tile=4, overlap=1, emit=lambda r, b: None)
    with pytest.raises(ValueError, match="plan order"):
        blender.add(blender.tiles[1], np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="shape"):
        blender.add(blender.tiles[0], np.zeros((2, 4, 4)))


def test_weights_are_positive_and_symmetric():
    w = blend_weights(16, 16, 5)
    assert w.min() > 0 and w.max() == 1
    np.testing.assert_allclose(w, w[::-1, ::-1])
