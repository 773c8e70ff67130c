"""WorldCereal and dl4sits readers on the real sample data; gap filling and sample splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cropcore.data.dl4sits import is_dl4sits, read_dl4sits
from cropcore.data.points import fill_gaps, split_by_sample
from cropcore.data.worldcereal import BANDS, read_worldcereal
from cropcore.errors import DatasetFormatError
from cropcore.settings import data_dir

WC = data_dir("worldcereal") / "worldcereal"


def test_long_dekadal_file_is_resampled_to_the_season_axis():
    s = read_worldcereal(WC / "2023_FRA_LPIS_POLY_110_dekad.geoparquet")
    assert s.x.shape == (500, 12, len(BANDS)) and len(np.unique(s.sample_id)) == 500
    finite = s.x[np.isfinite(s.x)]
    assert 0 < finite.min() and finite.max() < 2  # reflectance, nodata removed
    assert {0, 1, 2, 4} <= set(s.y.tolist())


def test_long_reader_averages_a_months_dekads():
    table = pd.read_parquet(WC / "2023_FRA_LPIS_POLY_110_dekad.geoparquet")
    sid = table["sample_id"].iloc[0]
    rows = table[(table["sample_id"] == sid) & (table["timestamp"].dt.strftime("%Y-%m") == "2023-06")]
    b04 = rows["S2-L2A-B04"].where(~rows["S2-L2A-B04"].isin([0, 65535])).mean() / 1e4
    s = read_worldcereal(WC / "2023_FRA_LPIS_POLY_110_dekad.geoparquet")
    got = s.x[list(s.sample_id).index(sid), 7, BANDS.index("B04")]  # June is step 7 (Nov first)
    assert got == pytest.approx(b04, rel=1e-5)


def test_wide_monthly_file_masks_nodata_and_missing_november():
    table = pd.read_parquet(WC / "public_extractions_monthly.parquet")
    s = read_worldcereal(WC / "public_extractions_monthly.parquet")
    assert s.x.shape == (500, 12, len(BANDS))
    assert np.isnan(s.x[:, 0]).all()  # Nov 2016 precedes the extraction's start (Dec 2016)
    dn = table["OPTICAL-B08-ts0-10m"].to_numpy()  # ts0 = Dec 2016 = step 1
    ok = ~np.isin(dn, [0, 65535])
    np.testing.assert_allclose(s.x[ok, 1, BANDS.index("B08")], dn[ok] / 1e4, rtol=1e-6)
    assert np.isnan(s.x[~ok, 1, BANDS.index("B08")]).all()
    assert (s.y == 3).sum() > 200  # sorghum dominates these East-African samples


def test_dl4sits_reader_is_date_major():
    path = data_dir("dl4sits") / "dl4sits" / "test_dataset.csv"
    s = read_dl4sits(path)
    raw = pd.read_csv(path, nrows=1)
    assert s.x.shape == (400, 73, 10) and is_dl4sits(path)
    assert s.x[0, 1, 0] == pytest.approx(raw["b10"].iloc[0] / 1e4)  # date 1, band 0 = column 10
    assert np.bincount(s.y).tolist() == [50] * 8 and s.class_names[1] == "Canola"


def test_unreadable_files_raise_format_errors(tmp_path):
    bad = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(bad)
    with pytest.raises(DatasetFormatError, match="ewoc_code"):
        read_worldcereal(bad)


def test_fill_gaps_interpolates_inside_and_holds_the_ends():
    x = np.array([[[np.nan], [1.0], [np.nan], [3.0], [np.nan]], [[np.nan]] * 5], np.float32)
    filled, mask = fill_gaps(x)
    np.testing.assert_allclose(filled[0, :, 0], [1, 1, 2, 3, 3])
    assert mask[0].all() and not mask[1].any()


def test_split_by_sample_keeps_ids_on_one_side():
    ids = np.repeat(np.arange(50), 3).astype(str)
    train, val, test = split_by_sample(ids, seed=1)
    assert not (train & val).any() and not (train & test).any() and (train | val | test).all()
    assert not set(ids[train]) & set(ids[test])
