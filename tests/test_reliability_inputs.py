"""Reliability, bad input: every AOI and date mistake gets a short answer in the library, the CLI (exit
code, one line on stderr) and the dashboard (``st.error``, no traceback). See docs/RELIABILITY.md."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from test_ui_pages import CROP_MAP, page, run_button
from test_ui_search import FakeMap, button, messages, search_page

from cropcore.aoi import AOI
from cropcore.cli import main
from cropcore.dates import normalize_daterange
from cropcore.errors import InvalidAOIError, InvalidDateRangeError, NoItemsFoundError
from cropcore.pipeline import RunParams, run
from cropcore.stac.catalog import search_items

DEMO = (5.322, 50.630, 5.330, 50.636)
KENYA = (36.80, -1.30, 36.81, -1.29)  # outside the embedded catalog's coverage
FUTURE = (datetime.now(UTC).date() + timedelta(days=40)).isoformat()


def polygon(*corners: tuple[float, float]) -> dict:
    return {"type": "Polygon", "coordinates": [[*corners, corners[0]]]}


# name -> (GeoJSON geometry, words the message must hold)
BAD_AOIS = {
    "self-intersecting": (polygon((5.322, 50.630), (5.330, 50.636), (5.330, 50.630), (5.322, 50.636)),
                          "crossing edges"),
    "zero area": (polygon((5.322, 50.630), (5.330, 50.630), (5.326, 50.630)), "invalid"),
    "lon/lat out of range": (polygon((185, 50), (186, 50), (186, 51)), "outside longitude"),
    "over the size limit": (polygon((0, 40), (5, 40), (5, 45), (0, 45)), "more than the limit"),
    "crossing the antimeridian": (polygon((179.5, -17), (-179.5, -17), (-179.5, -16), (179.5, -16)),
                                  "antimeridian"),
}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """Run the CLI in this process; its exit code and the lines it wrote to stderr."""
    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("name", BAD_AOIS)
def test_bad_aoi_is_refused_in_library_cli_and_ui(name, stac_api, tmp_path, capsys, monkeypatch):
    geometry, words = BAD_AOIS[name]
    with pytest.raises(InvalidAOIError, match=words):
        AOI.parse(geometry)
    with pytest.raises(InvalidAOIError, match=words):  # never reaches the server
        search_items(geometry, ("2021-01-01", "2021-06-30"), catalog=stac_api)
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps(geometry))
    code, err = cli(capsys, "search", "--aoi", str(aoi), "--start", "2021-01-01", "--end", "2021-06-30",
                    "--catalog", stac_api)
    assert code == 2 and len(err) == 1 and words in err[0]
    at = search_page(monkeypatch, FakeMap())
    at = at.get("file_uploader")[0].upload("aoi.geojson", aoi.read_bytes(), "application/geo+json").run()
    assert not at.exception and "Invalid area of interest" in messages(at.error)
    assert button(at, "Search scenes").disabled


def test_reversed_bbox_on_the_cli_is_one_line(capsys):
    code, err = cli(capsys, "search", "--bbox", "179.5", "-17", "-179.5", "-16", "--start", "2021-01-01",
                    "--end", "2021-06-30")
    assert code == 2 and len(err) == 1 and "antimeridian" in err[0]


@pytest.mark.parametrize(("content", "words"), [(b"{\"type\": \"Polygon\", \"coord", "not valid JSON"),
                                                (b"\xff\xfe\x00binary", "not text")])
def test_malformed_geojson_file_on_the_cli(content, words, tmp_path, capsys):
    aoi = tmp_path / "aoi.geojson"
    aoi.write_bytes(content)
    code, err = cli(capsys, "search", "--aoi", str(aoi), "--start", "2021-01-01", "--end", "2021-06-30")
    assert code == 2 and len(err) == 1 and words in err[0]


def test_too_large_geojson_is_refused_before_reading(tmp_path, capsys):
    feature = {"type": "Feature", "properties": {"padding": "x" * 1_100_000},
               "geometry": polygon((5.322, 50.630), (5.330, 50.630), (5.330, 50.636))}
    text = json.dumps(feature)
    with pytest.raises(InvalidAOIError, match="more than the limit of 1 MB"):
        AOI.parse(text)
    aoi = tmp_path / "big.geojson"
    aoi.write_text(text)
    code, err = cli(capsys, "search", "--aoi", str(aoi), "--start", "2021-01-01", "--end", "2021-06-30")
    assert code == 2 and len(err) == 1 and "more than the limit of 1 MB" in err[0]


def test_aoi_outside_the_catalog_coverage(stac_api, capsys, monkeypatch):
    with pytest.raises(NoItemsFoundError, match="move the AOI"):
        search_items(KENYA, ("2020-11-01", "2021-10-31"), catalog=stac_api)
    code, err = cli(capsys, "search", "--bbox", *map(str, KENYA), "--start", "2020-11-01", "--end", "2021-10-31",
                    "--catalog", stac_api)
    assert code == 3 and len(err) == 1 and "no scenes" in err[0]
    kenya = {"type": "Feature", "properties": {}, "geometry": polygon((36.80, -1.30), (36.81, -1.30),
                                                                     (36.81, -1.29), (36.80, -1.29))}
    at = search_page(monkeypatch, FakeMap(kenya))
    at = button(at, "Search scenes").click().run()
    assert not at.exception and len(at.error) == 1 and "no scenes" in at.error[0].value


def test_reversed_dates(stac_api, capsys):
    with pytest.raises(InvalidDateRangeError, match="reversed"):
        normalize_daterange(("2021-06-30", "2021-01-01"))
    code, err = cli(capsys, "search", "--bbox", *map(str, DEMO), "--start", "2021-06-30", "--end", "2021-01-01",
                    "--catalog", stac_api)
    assert code == 2 and len(err) == 1 and "reversed" in err[0]


def test_dates_in_the_future_are_refused(stac_api, capsys):
    """Decision: a date after today is refused (no scene can exist yet); a season not over yet too."""
    with pytest.raises(InvalidDateRangeError, match="in the future"):
        normalize_daterange(("2021-01-01", FUTURE))
    with pytest.raises(InvalidDateRangeError, match="in the future"):
        search_items(DEMO, (FUTURE, FUTURE), catalog=stac_api)
    code, err = cli(capsys, "search", "--bbox", *map(str, DEMO), "--start", "2021-01-01", "--end", FUTURE,
                    "--catalog", stac_api)
    assert code == 2 and len(err) == 1 and "in the future" in err[0]
    # A season that has not ended: the model needs all its months.
    today = datetime.now(UTC).date()
    start = date(today.year if today.month >= 11 else today.year - 1, 11, 1).isoformat()
    with pytest.raises(InvalidDateRangeError, match="not over yet"):
        run(RunParams(aoi=DEMO, start=start, end=today.isoformat(), catalog=stac_api))
    code, err = cli(capsys, "predict", "--bbox", *map(str, DEMO), "--start", start, "--end", today.isoformat(),
                    "--catalog", stac_api, "--out", "never-written.tif")
    assert code == 2 and len(err) == 1 and "not over yet" in err[0]


def test_dashboard_never_asks_for_future_dates(monkeypatch):
    at = search_page(monkeypatch, FakeMap())
    at.selectbox(key="widget.season").select("Calendar year (Jan-Dec)").run()
    at.number_input(key="widget.season_year").set_value(datetime.now(UTC).year).run()
    assert not at.exception
    assert "ends today for now" in messages(at.caption)
    at.selectbox(key="widget.season").select("Custom dates").run()
    assert at.date_input(key="widget.dates").max == datetime.now(UTC).date()


def test_a_season_not_over_is_an_error_on_the_crop_map_page(stac_api, monkeypatch):
    today = datetime.now(UTC).date()
    start = date(today.year if today.month >= 11 else today.year - 1, 11, 1)
    searched = {"aoi": {"type": "Feature", "properties": {}, "geometry": polygon(
        (5.322, 50.630), (5.330, 50.630), (5.330, 50.636), (5.322, 50.636))},
        "datetime": (start, today), "max_cloud": 80.0, "catalog": "local"}
    at = page(CROP_MAP, monkeypatch, **{"cropcore.aoi": searched["aoi"], "cropcore.aoi_source": "drawn",
                                        "cropcore.search_params": searched})
    at = run_button(at).click().run()
    assert not at.exception and len(at.error) == 1 and "not over yet" in at.error[0].value


def test_a_range_with_no_scenes(stac_api, capsys, monkeypatch):
    with pytest.raises(NoItemsFoundError, match="widen the dates"):
        search_items(DEMO, ("2016-01-01", "2016-06-30"), catalog=stac_api)
    code, err = cli(capsys, "search", "--bbox", *map(str, DEMO), "--start", "2016-01-01", "--end", "2016-06-30",
                    "--catalog", stac_api)
    assert code == 3 and len(err) == 1
    at = search_page(monkeypatch, FakeMap({"type": "Feature", "properties": {}, "geometry": polygon(
        (5.322, 50.630), (5.330, 50.630), (5.330, 50.636), (5.322, 50.636))}))
    at.number_input(key="widget.season_year").set_value(2017).run()
    at = button(at, "Search scenes").click().run()
    assert not at.exception and len(at.error) == 1 and "widen the dates" in at.error[0].value


def test_all_scenes_cloudy(stac_api, capsys):
    """December 2020 and January 2021 are 100 % cloud in the demo patch."""
    assert len(search_items(DEMO, ("2020-12-01", "2021-01-31"), catalog=stac_api).items) == 2
    with pytest.raises(NoItemsFoundError, match="raise the cloud limit"):
        search_items(DEMO, ("2020-12-01", "2021-01-31"), max_cloud=80, catalog=stac_api)
    code, err = cli(capsys, "search", "--bbox", *map(str, DEMO), "--start", "2020-12-01", "--end", "2021-01-31",
                    "--max-cloud", "80", "--catalog", stac_api)
    assert code == 3 and len(err) == 1 and "at most 80% cloud" in err[0]


def test_reversed_custom_dates_in_the_dashboard(stac_api, monkeypatch):
    at = search_page(monkeypatch, FakeMap({"type": "Feature", "properties": {}, "geometry": polygon(
        (5.322, 50.630), (5.330, 50.630), (5.330, 50.636), (5.322, 50.636))}))
    at.selectbox(key="widget.season").select("Custom dates").run()
    at.date_input(key="widget.dates").set_value((date(2021, 6, 30), date(2021, 1, 1))).run()
    at = button(at, "Search scenes").click().run()
    assert not at.exception and len(at.error) == 1 and "reversed" in at.error[0].value
