"""End to end, offline: the real demo scenes described as Earth Search v1, the Planetary Computer and
Copernicus Data Space describe theirs (tests/catalog_fixtures.py), served by the replay STAC API
(tests/replay_stac.py), give the embedded catalog's crop map (>= 99 % of pixels) and its reflectance (1e-4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from catalog_fixtures import BANDS_10M, BANDS_20M, LAYOUTS, demo_items
from replay_stac import replay

from cropcore.cube.load import load_cube
from cropcore.cube.preprocess import preprocess
from cropcore.pipeline import RunParams, run
from cropcore.stac.catalog import search_items

AOI = (5.3189, 50.6286, 5.3334, 50.6378)  # the demo area of the README
START, END = "2020-11-01", "2021-10-31"
AXIS = pd.date_range(START, periods=12, freq="MS")


@pytest.fixture(scope="module")
def demo_cogs(tmp_path_factory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("public-catalog-maps")
    return {catalog: demo_items(catalog, out) for catalog in LAYOUTS}


@pytest.fixture(scope="module")
def embedded(stac_api):
    """The crop map and reflectance from the embedded catalog's items of the same scenes."""
    return run(RunParams(aoi=AOI, start=START, end=END, catalog=stac_api))


@pytest.mark.parametrize("catalog", list(LAYOUTS))
def test_each_public_layout_gives_the_embedded_crop_map(catalog, demo_cogs, embedded):
    with replay(demo_cogs[catalog], catalog) as api:
        result = run(RunParams(aoi=AOI, start=START, end=END, catalog=api.url, collections=["sentinel-2-l2a"]))
    assert not result.failures
    assert len(result.search.items) == 10  # December and January: 100 % cloud, over the 80 % limit
    # the 10 m bands are read at their own resolution: the same reflectance, month by month
    a = result.reflectance.sel(band=list(BANDS_10M)).values
    b = embedded.reflectance.sel(band=list(BANDS_10M)).values
    both = np.isfinite(a) & np.isfinite(b)
    assert (np.isfinite(a) == np.isfinite(b)).all() and both.mean() > 0.8  # the AOI overhangs the patch
    np.testing.assert_allclose(a[both], b[both], atol=1e-4, rtol=0)
    ours, theirs = result.prediction["class"].values, embedded.prediction["class"].values
    assert ours.shape == theirs.shape
    agreement = float((ours == theirs).mean())
    assert agreement >= 0.99, f"{catalog}: {agreement:.2%} of pixels agree"


def reflectance_at_20m(catalog: str, **search) -> np.ndarray:
    """The 20 m bands' monthly reflectance on a 20 m grid, without the cloud limit: read at their own
    resolution, and the embedded catalog's 10 m copies averaged over each 2 x 2 block (resampling "average"),
    as the demo scenes' 20 m pixels were made."""
    found = search_items(AOI, (START, END), catalog=catalog, **search)
    loaded = load_cube(found.items, list(BANDS_20M), aoi=AOI, resolution=20, resampling="average")
    return preprocess(loaded.cube, freq="monthly", axis=AXIS).sel(band=list(BANDS_20M)).values


@pytest.mark.parametrize("catalog", list(LAYOUTS))
def test_each_public_layout_gives_the_embedded_reflectance_in_the_20m_bands(catalog, demo_cogs, stac_api):
    reference = reflectance_at_20m(stac_api)
    with replay(demo_cogs[catalog], catalog) as api:
        ours = reflectance_at_20m(api.url, collections=["sentinel-2-l2a"])
    assert ours.shape == reference.shape
    both = np.isfinite(ours) & np.isfinite(reference)
    assert (np.isfinite(ours) == np.isfinite(reference)).all() and both.mean() > 0.8  # the AOI overhangs the patch
    np.testing.assert_allclose(ours[both], reference[both], atol=1e-4, rtol=0)
