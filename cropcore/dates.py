"""Normalise a user's date range once, at the boundary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from cropcore.errors import InvalidDateRangeError

DateLike = date | datetime | str | None


def _parse(value: DateLike, *, end: bool) -> datetime | None:
    if value is None or value in ("", ".."):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time.max if end else time.min, tzinfo=UTC)
    text = str(value).strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time.max if end else time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidDateRangeError(f"cannot read the date {value!r}: use YYYY-MM-DD") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalize_daterange(value: str | Sequence[DateLike] | DateLike) -> tuple[datetime | None, datetime | None]:
    """Return ``(start, end)`` in UTC from ``"start/end"``, a pair, or one date (that whole day).

    A date without time covers the whole day; ``None`` or ``..`` leaves that side open. A date after today
    (UTC) is refused: no scene can exist yet, and a silently clipped range would hide the mistake.
    """
    if isinstance(value, str) and "/" in value:
        parts: Sequence[DateLike] = value.split("/")
    elif isinstance(value, str | date) or value is None:
        parts = (value, value)
    else:
        parts = list(value)
    if len(parts) != 2:
        raise InvalidDateRangeError(f"a date range is two dates (start, end), got {value!r}")
    start, stop = _parse(parts[0], end=False), _parse(parts[1], end=True)
    if start and stop and start > stop:
        raise InvalidDateRangeError(f"the date range is reversed: {start:%Y-%m-%d} is after {stop:%Y-%m-%d}")
    today = datetime.now(UTC).date()
    for name, when in (("start", start), ("end", stop)):
        if when is not None and when.astimezone(UTC).date() > today:
            raise InvalidDateRangeError(
                f"the {name} date {when:%Y-%m-%d} is in the future (today is {today:%Y-%m-%d}): no scene exists "
                "yet; end the range today or earlier"
            )
    return start, stop


def to_stac_interval(start: datetime | None, end: datetime | None) -> str:
    """The STAC API ``datetime`` parameter for an interval."""
    def fmt(d: datetime | None) -> str:
        return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if d else ".."
    return f"{fmt(start)}/{fmt(end)}"
