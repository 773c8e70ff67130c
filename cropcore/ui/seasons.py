"""Season presets for the date range (pure; no streamlit)."""

from __future__ import annotations

from datetime import date

#: Preset name -> (first month, last month); a season ends in the year the user picks.
SEASONS: dict[str, tuple[int, int]] = {
    "Agricultural year (Nov-Oct)": (11, 10),
    "Winter crops (Oct-Jul)": (10, 7),
    "Summer crops (Apr-Oct)": (4, 10),
    "Calendar year (Jan-Dec)": (1, 12),
}
CUSTOM = "Custom dates"


def season_range(season: str, year: int) -> tuple[date, date]:
    """First and last day of ``season`` ending in ``year`` (a start month after the end month is the year before).

    >>> season_range("Agricultural year (Nov-Oct)", 2021)
    (datetime.date(2020, 11, 1), datetime.date(2021, 10, 31))
    """
    if season not in SEASONS:
        raise KeyError(f"unknown season {season!r}; choose one of {', '.join(SEASONS)}")
    start_month, end_month = SEASONS[season]
    start = date(year - 1 if start_month > end_month else year, start_month, 1)
    next_month = date(year + end_month // 12, end_month % 12 + 1, 1)
    return start, date.fromordinal(next_month.toordinal() - 1)
