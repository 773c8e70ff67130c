"""The Belgian 2021 WorldCereal extractions (long, wide legacy monthly and dekadal) on the real sample data."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from cropcore.data import read_belgium_2021
from cropcore.data.belgium import FILES, FOLDER, duplicate_of
from cropcore.data.worldcereal import BANDS, TIME_AXIS, load_legacy_map, read_worldcereal
from cropcore.legend import CROP_LEGEND
from cropcore.settings import data_dir

BE = data_dir(FOLDER) / FOLDER
LONG, MONTHLY, DEKAD = (BE / name for name in FILES)
NAMES = [c.name for c in CROP_LEGEND]


@pytest.mark.parametrize(("path", "n"), [(LONG, 100), (MONTHLY, 50), (DEKAD, 50)])
def test_each_file_reads_onto_the_season_axis(path, n):
    s = read_worldcereal(path)
    assert s.x.shape == (n, 12, len(BANDS)) and len(set(s.sample_id)) == n
    assert s.bands == BANDS and s.time_axis == TIME_AXIS and s.class_names == tuple(NAMES)
    assert set(s.y.tolist()) <= {-1, *range(len(NAMES))}
    finite = s.x[np.isfinite(s.x)]
    assert finite.min() >= 0 and finite.max() < 6.6  # reflectance; DN 0/65535 masked
    assert 0.05 < np.median(finite) < 0.3 and np.percentile(finite, 95) < 0.6
    assert np.isfinite(s.x).all(axis=2).any(axis=1).all()  # every point has observations


def test_labels_per_file():
    counts = {p.name: np.bincount(read_worldcereal(p).y + 1, minlength=len(NAMES) + 1).tolist()
              for p in (LONG, MONTHLY, DEKAD)}
    # [unlabelled, non-crop, maize, winter cereals, sorghum/millet, oilseeds, other crops]
    assert counts == {LONG.name: [46, 36, 12, 3, 0, 0, 3], MONTHLY.name: [20, 21, 5, 2, 0, 0, 2],
                      DEKAD.name: [23, 15, 7, 3, 0, 0, 2]}


def test_legacy_codes_map_to_ewoc_as_in_the_csv():
    raw = pd.read_csv(BE / "wc2eurocrops_map.csv", dtype=str).set_index("croptype")["ewoc_code"]
    table = load_legacy_map()
    for legacy in ("1200", "1110", "1510", "5100", "9120", "99", "30"):
        assert table[int(legacy)] == int(raw[legacy].replace("-", ""))
    assert table[1200] == 1101060000 and table[9120] == 1300000000 and table[99] == 1600000000


def test_legacy_labels_reach_the_legend():
    table = pd.read_parquet(MONTHLY).reset_index()
    s = read_worldcereal(MONTHLY)
    y = dict(zip(s.sample_id, s.y, strict=True))
    label = dict(zip(table["sample_id"], zip(table["CROPTYPE_LABEL"], table["LANDCOVER_LABEL"], strict=True),
                     strict=True))
    expect = {1200: "maize", 1110: "winter cereals", 5100: "other crops"}
    for sid, (crop, cover) in label.items():
        if crop in expect:
            assert NAMES[y[sid]] == expect[crop]
        elif crop == 9120:  # legacy permanent grass: grassland, non-crop (worldcereal.LEGACY_LANDCOVER)
            assert y[sid] == 0
        elif cover == 99:  # "no cropland": ignored by class_mappings
            assert y[sid] == -1
        elif crop == 0 and cover in (30, 40, 70):  # shrubland, forest, water
            assert y[sid] == 0


def test_monthly_legacy_steps_start_at_start_date():
    table = pd.read_parquet(MONTHLY)
    s = read_worldcereal(MONTHLY)
    # ts0 = Aug 2020 (start_date), so Nov 2020 (season step 0) is ts3 and Jun 2021 (step 7) is ts10
    for step, ts in ((0, 3), (7, 10), (11, 14)):
        raw = table[f"OPTICAL-B04-ts{ts}-10m"].to_numpy()
        want = np.where(np.isin(raw, (0, 65535)), np.nan, raw / 1e4)
        np.testing.assert_allclose(s.x[:, step, BANDS.index("B04")], want, rtol=1e-5)


def test_dekadal_legacy_file_averages_a_months_dekads():
    table = pd.read_parquet(DEKAD)
    assert (table["OPTICAL-B04-ts0-10m"] == 65535).all()  # ts0 = 21 Jul 2020, before start_date
    s = read_worldcereal(DEKAD)
    # valid_position 31 = valid_date 1 Jun 2021: June is ts31-33, season step 7
    raw = table[[f"OPTICAL-B04-ts{ts}-10m" for ts in (31, 32, 33)]].to_numpy().astype(float)
    raw[np.isin(raw, (0, 65535))] = np.nan
    with warnings.catch_warnings():  # all-missing months give NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanmean(raw, axis=1) / 1e4
    np.testing.assert_allclose(s.x[:, 7, BANDS.index("B04")], want, rtol=1e-5)


def test_three_files_together_are_deduplicated_by_location():
    s, report = read_belgium_2021()
    assert report.read == {LONG.name: 100, MONTHLY.name: 50, DEKAD.name: 50}
    # no two points of the files lie within 1 m (the nearest pair across files is ~200 m apart)
    assert report.dropped == 0 and report.kept == len(s) == 200 and len(set(s.sample_id)) == 200
    labelled = s.labelled()
    assert np.bincount(labelled.y, minlength=len(NAMES)).tolist() == [72, 24, 8, 0, 0, 7]
    assert {0, 1, 2, 5} <= set(labelled.y.tolist())


def test_duplicates_keep_the_preferred_file(tmp_path):
    for name, source in zip(FILES, (LONG, MONTHLY, MONTHLY), strict=True):  # the dekadal slot repeats monthly
        (tmp_path / name).symlink_to(source)
    s, report = read_belgium_2021(tmp_path)
    assert report.dropped == 50 and report.kept == 150 and report.label_conflicts == 0
    assert len(s) == 150 and len(set(s.sample_id)) == 150


def test_duplicate_tolerance_is_about_a_metre():
    lat = np.array([51.0, 51.0 + 0.5 / 111_195, 51.0 + 3 / 111_195, 51.0])
    lon = np.array([4.0, 4.0, 4.0, 4.0 + 0.8 / (111_195 * np.cos(np.radians(51)))])
    assert duplicate_of(lon, lat).tolist() == [-1, 0, -1, 0]
