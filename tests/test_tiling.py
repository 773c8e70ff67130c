"""Tiling and blending: stitch(tiles(x)) == x for any shape, tile, overlap and strip; memory stays bounded."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cropcore.errors import ConfigError
from cropcore.inference.tiling import Blender, blend_weights, strip_extents, tile_origins


@st.composite
def layouts(draw):
    tile = draw(st.integers(2, 40))
    overlap = draw(st.integers(0, tile - 1))
    return draw(st.integers(1, 120)), draw(st.integers(1, 120)), tile, overlap


@given(layouts(), st.one_of(st.none(), st.integers(0, 60)))
def test_tiles_cover_the_raster_within_bounds(layout, extra):
    height, width, tile, overlap = layout
    strip = None if extra is None else tile + extra
    cover = np.zeros((height, width), dtype=int)
    for t in Blender(1, height, width, tile=tile, overlap=overlap, strip=strip, emit=lambda *a: None).tiles:
        assert 0 <= t.row and t.row + t.height <= height and 0 <= t.col and t.col + t.width <= width
        assert t.height == min(tile, height) and t.width == min(tile, width)
        cover[t.slices] += 1
    assert cover.min() >= 1


@settings(max_examples=80, deadline=None)
@given(layouts(), st.integers(1, 3), st.one_of(st.none(), st.integers(1, 60)))
def test_stitching_tiles_of_x_gives_back_x(layout, bands, strip):
    height, width, tile, overlap = layout
    strip = None if strip is None else tile + strip  # strips are at least a tile wide
    x = np.random.default_rng(0).normal(size=(bands, height, width)).astype(np.float32)
    out = np.full_like(x, np.nan)
    hits = np.zeros((height, width), dtype=int)

    def emit(row0, col0, block):
        window = slice(row0, row0 + block.shape[1]), slice(col0, col0 + block.shape[2])
        out[(slice(None), *window)] = block
        hits[window] += 1

    blender = Blender(bands, height, width, tile=tile, overlap=overlap, strip=strip, emit=emit)
    for t in blender.tiles:
        blender.add(t, x[(slice(None), *t.slices)])
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-5)
    assert (hits == 1).all()  # every pixel emitted exactly once


@settings(max_examples=60, deadline=None)
@given(layouts(), st.integers(1, 60))
def test_strips_blend_exactly_like_one_strip(layout, extra):
    # tiles that disagree (each predicts a value depending on its position): blending in strips must weigh
    # every pixel with the same tiles and weights as blending over the whole width
    height, width, tile, overlap = layout
    strip = tile + extra

    def blend(strip_width):
        out = np.full((1, height, width), np.nan)

        def emit(row0, col0, block):
            out[:, row0:row0 + block.shape[1], col0:col0 + block.shape[2]] = block

        blender = Blender(1, height, width, tile=tile, overlap=overlap, strip=strip_width, emit=emit)
        for t in blender.tiles:
            blender.add(t, np.full((1, t.height, t.width), float(t.row * 1000 + t.col)))
        return out, blender

    stripped, blender = blend(strip)
    for (a0, a1), (b0, _) in zip(blender.extents, blender.extents[1:], strict=False):
        assert a1 - b0 == overlap and b0 > a0  # neighbours share exactly the overlap
    # the reference: the same tiles blended by hand over the whole raster
    acc, wsum = np.zeros((height, width)), np.zeros((height, width))
    for t in blender.tiles:
        w = blend_weights(t.height, t.width, overlap)
        acc[t.slices] += w * (t.row * 1000 + t.col)
        wsum[t.slices] += w
    np.testing.assert_allclose(stripped[0], acc / wsum, rtol=1e-6)


def test_strip_extents():
    assert strip_extents(100, tile=32, overlap=8, strip=None) == [(0, 100)]
    assert strip_extents(100, tile=32, overlap=8, strip=100) == [(0, 100)]
    assert strip_extents(100, tile=32, overlap=8, strip=40) == [(0, 40), (32, 100)]  # last core widened
    assert strip_extents(130, tile=32, overlap=8, strip=40) == [(0, 40), (32, 80), (72, 130)]
    with pytest.raises(ConfigError, match="at least the tile"):
        strip_extents(100, tile=32, overlap=8, strip=20)


def test_blending_removes_seams_between_disagreeing_tiles():
    # two tiles that predict constants 0 and 1: the overlap becomes a smooth ramp, not a step
    out = np.zeros((1, 4, 12), dtype=np.float32)

    def emit(row0, col0, block):
        out[:, row0:row0 + block.shape[1], col0:col0 + block.shape[2]] = block

    blender = Blender(1, 4, 12, tile=8, overlap=4, emit=emit)
    first, second = blender.tiles
    blender.add(first, np.zeros((1, 4, 8)))
    blender.add(second, np.ones((1, 4, 8)))
    row = out[0, 0]
    assert row[0] == 0 and row[-1] == 1
    assert np.all(np.diff(row) >= 0) and np.max(np.diff(row)) < 0.5


def test_accumulator_holds_one_band_of_rows_of_one_strip():
    sizes = []
    blender = Blender(2, 1000, 500, tile=20, overlap=4, strip=60,
                      emit=lambda r, c, b: sizes.append(b.shape[1] * b.shape[2]))
    peak = (0, 0)
    for t in blender.tiles:
        blender.add(t, np.ones((2, t.height, t.width)))
        peak = max(peak, blender._wsum.shape)
    assert peak[0] <= 20 and peak[1] <= 64 and sum(sizes) == 1000 * 500


def test_bad_arguments():
    with pytest.raises(ConfigError):
        tile_origins(10, 4, 4)
    blender = Blender(1, 10, 10, tile=4, overlap=1, emit=lambda r, c, b: None)
    with pytest.raises(ValueError, match="plan order"):
        blender.add(blender.tiles[1], np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="shape"):
        blender.add(blender.tiles[0], np.zeros((2, 4, 4)))


def test_weights_are_positive_and_symmetric():
    w = blend_weights(16, 16, 5)
    assert w.min() > 0 and w.max() == 1
    np.testing.assert_allclose(w, w[::-1, ::-1])
