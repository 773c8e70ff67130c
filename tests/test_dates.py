"""Date-range normalisation."""

from datetime import UTC, date, datetime

import pytest

from cropcore.dates import normalize_daterange, to_stac_interval
from cropcore.errors import InvalidDateRangeError


def test_string_range_covers_whole_days():
    start, end = normalize_daterange("2021-03-01/2021-03-31")
    assert start == datetime(2021, 3, 1, tzinfo=UTC)
    assert end.date() == date(2021, 3, 31) and end.hour == 23
    assert to_stac_interval(start, end) == "2021-03-01T00:00:00Z/2021-03-31T23:59:59Z"


def test_pairs_single_dates_and_open_ends():
    assert normalize_daterange((date(2021, 1, 1), "2021-02-01"))[0] == datetime(2021, 1, 1, tzinfo=UTC)
    start, end = normalize_daterange("2021-05-05")
    assert (start.date(), end.date()) == (date(2021, 5, 5), date(2021, 5, 5))
    assert to_stac_interval(*normalize_daterange("../2021-01-01")).startswith("../")


@pytest.mark.parametrize(
    ("value", "message"),
    [("2021-05-01/2021-04-01", "reversed"), ("yesterday/today", "cannot read"), (("2021-01-01",), "two dates")],
)
def test_bad_ranges(value, message):
    with pytest.raises(InvalidDateRangeError, match=message):
        normalize_daterange(value)
