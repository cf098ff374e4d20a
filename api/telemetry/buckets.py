"""Pure rules of the telemetry queries: intervals, bucket counts, which rollup answers, cursors, CSV cells.

No database here: these are the parts a reviewer checks by reading, and hypothesis tests them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

# Buckets start at whole multiples of the interval counted from this Monday, 00:00 UTC, on both
# storage paths (time_bucket's default origin; date_bin is given the same one), so weeks start on
# Mondays and days at midnight UTC.
ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=366)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# What the 400 of a request over the points cap suggests, finest first.
LADDER = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    HOUR,
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    DAY,
    timedelta(days=7),
    timedelta(days=30),
)

_SHORT = re.compile(r"^(\d{1,9})(s|m|h|d|w)$")
_ISO = re.compile(r"^P(?:(\d{1,9})W|(?:(\d{1,9})D)?(?:T(?:(\d{1,9})H)?(?:(\d{1,9})M)?(?:(\d{1,9})S)?)?)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

Source = Literal["raw", "hourly", "daily"]


class IntervalError(ValueError):
    """The interval is not one we can bucket by."""


def parse_interval(text: str) -> timedelta:
    """`1m`, `15m`, `1h`, `1d`, `1w`, or an ISO 8601 duration of weeks, days, hours, minutes, seconds
    (`PT1H`, `P1D`, `PT15M`). Months and years have no fixed length and are refused."""
    value = text.strip()
    short = _SHORT.match(value)
    if short:
        seconds = int(short[1]) * _UNITS[short[2]]
    else:
        iso = _ISO.match(value.upper())
        if not iso or value.upper() in ("P", "PT") or value.upper().endswith("T"):
            raise IntervalError(
                f"interval {text!r} is not understood: use 1m, 15m, 1h, 1d or an ISO 8601 duration like PT1H"
            )
        weeks, days, hours, minutes, secs = (int(g) if g else 0 for g in iso.groups())
        seconds = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + secs
    # Compared as seconds: 999999999w is too long for a timedelta (an OverflowError, a 500).
    if not MIN_INTERVAL.total_seconds() <= seconds <= MAX_INTERVAL.total_seconds():
        raise IntervalError(f"interval must be between 1 second and 366 days, got {text!r}")
    return timedelta(seconds=seconds)


def iso_duration(interval: timedelta) -> str:
    """The ISO 8601 form of an interval (`PT1H`, `P1D`, `PT15M`, `P1DT6H`)."""
    seconds = int(interval.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


def floor_to_bucket(ts: datetime, interval: timedelta) -> datetime:
    """The start of the bucket that holds `ts`."""
    step = int(interval.total_seconds() * 1_000_000)
    offset = (ts - ORIGIN) // timedelta(microseconds=1)
    return ORIGIN + timedelta(microseconds=(offset // step) * step)


def aligned_range(start: datetime, end: datetime, interval: timedelta) -> tuple[datetime, datetime]:
    """[start, end) widened to whole buckets: bucketed answers cover whole buckets on every path."""
    first = floor_to_bucket(start, interval)
    last = floor_to_bucket(end, interval)
    return first, last if last == end else last + interval


def bucket_count(start: datetime, end: datetime, interval: timedelta) -> int:
    first, stop = aligned_range(start, end, interval)
    return math.ceil((stop - first) / interval)


def fitting_interval(start: datetime, end: datetime, max_points: int) -> timedelta | None:
    """The finest interval of the ladder whose buckets over [start, end) stay within the cap."""
    for interval in LADDER:
        if bucket_count(start, end, interval) <= max_points:
            return interval
    return None


def source_for(interval: timedelta) -> Source:
    """The coarsest stored rollup whose buckets nest in the interval's (raw below an hour)."""
    if interval % DAY == timedelta(0):
        return "daily"
    if interval % HOUR == timedelta(0):
        return "hourly"
    return "raw"


# A cursor is the microseconds from ORIGIN to the last reading sent: every string of this pattern
# (the one the document gives) names a time within datetime's range, so none is refused.
CURSOR_PATTERN = r"^-?[0-9]{1,16}$"
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True)
class Cursor:
    """Where the next page of raw points starts: after this reading time."""

    after: datetime

    def encode(self) -> str:
        return str((self.after - ORIGIN) // timedelta(microseconds=1))

    @classmethod
    def decode(cls, text: str) -> Cursor:
        if not _CURSOR.fullmatch(text):
            raise ValueError("cursor is not one this API gave out")
        return cls(ORIGIN + timedelta(microseconds=int(text)))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: object) -> str:
    """A CSV cell that no spreadsheet runs as a formula: text starting with = + - @ or a control
    character gets a leading apostrophe; numbers (a negative current too) stay numbers."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, bool | int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
