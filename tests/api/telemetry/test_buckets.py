"""The pure rules of the telemetry queries: intervals, buckets, cursors and CSV cells."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.telemetry.buckets import (
    CURSOR_PATTERN,
    ORIGIN,
    Cursor,
    IntervalError,
    aligned_range,
    bucket_count,
    csv_cell,
    fitting_interval,
    floor_to_bucket,
    iso_duration,
    parse_interval,
    source_for,
)
from api.telemetry.router import BBOX_PATTERN
from api.telemetry.service import parse_bbox

H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1m", timedelta(minutes=1)),
        ("15m", timedelta(minutes=15)),
        ("1h", H),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(days=14)),
        ("PT1H", H),
        ("pt15m", timedelta(minutes=15)),
        ("P1D", timedelta(days=1)),
        ("P1DT6H", timedelta(hours=30)),
        ("PT90S", timedelta(seconds=90)),
        ("P1W", timedelta(days=7)),
    ],
)
def test_intervals_short_and_iso(text: str, expected: timedelta) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "P",
        "PT",
        "P1M",
        "P1Y",
        "1x",
        "0m",
        "PT0S",
        "-1h",
        "1.5h",
        "P1DT",
        "400d",
        "999999999w",
        "P999999999W",
    ],
)
def test_intervals_refused(text: str) -> None:
    with pytest.raises(IntervalError):
        parse_interval(text)


@given(st.integers(min_value=1, max_value=366 * 86400))
def test_iso_duration_round_trips(seconds: int) -> None:
    interval = timedelta(seconds=seconds)
    assert parse_interval(iso_duration(interval)) == interval


stamps = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))


@given(
    stamps,
    st.sampled_from([timedelta(minutes=1), timedelta(minutes=15), H, timedelta(days=1), timedelta(days=7)]),
)
def test_a_bucket_holds_its_time(ts: datetime, interval: timedelta) -> None:
    start = floor_to_bucket(ts, interval)
    assert start <= ts < start + interval
    assert (start - ORIGIN) % interval == timedelta(0)


def test_weeks_start_on_monday_and_days_at_midnight_utc() -> None:
    ts = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)  # a Wednesday
    assert floor_to_bucket(ts, timedelta(days=7)) == datetime(2026, 11, 30, tzinfo=UTC)
    assert floor_to_bucket(ts, timedelta(days=1)) == datetime(2026, 12, 2, tzinfo=UTC)


@given(stamps, st.integers(min_value=1, max_value=10**6), st.sampled_from([timedelta(minutes=5), H]))
def test_aligned_range_covers_the_range_in_whole_buckets(
    start: datetime, seconds: int, interval: timedelta
) -> None:
    end = start + timedelta(seconds=seconds)
    first, stop = aligned_range(start, end, interval)
    assert first <= start and stop >= end
    assert (stop - first) % interval == timedelta(0)
    assert bucket_count(start, end, interval) == (stop - first) // interval


def test_fitting_interval_is_the_finest_under_the_cap() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert fitting_interval(start, start + timedelta(days=30), 10_000) == timedelta(minutes=5)
    assert fitting_interval(start, start + timedelta(days=30), 720) == H
    assert fitting_interval(start, start + timedelta(days=3000), 10) is None


def test_rollup_sources() -> None:
    assert source_for(timedelta(minutes=15)) == "raw"
    assert source_for(timedelta(minutes=90)) == "raw"
    assert source_for(H) == source_for(timedelta(hours=6)) == "hourly"
    assert source_for(timedelta(days=1)) == source_for(timedelta(days=7)) == "daily"


@given(stamps)
def test_cursor_round_trips(ts: datetime) -> None:
    assert Cursor.decode(Cursor(ts).encode()).after == ts


@given(st.from_regex(CURSOR_PATTERN))
def test_every_cursor_of_the_documented_pattern_decodes(text: str) -> None:
    Cursor.decode(text.rstrip("\n"))


@pytest.mark.parametrize("text", ["", "x", "dDp4eXo", "!!!", "t:" * 40, "+1", " 1", "1_0", "1" * 17])
def test_foreign_cursors_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        Cursor.decode(text)


def test_csv_cells_never_start_a_formula() -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("-A1+B2") == "'-A1+B2"
    assert csv_cell("@SUM") == "'@SUM"
    assert csv_cell("+1") == "'+1"
    assert csv_cell("BAT001") == "BAT001"
    assert csv_cell(-12.5) == "-12.5"  # numbers stay numbers
    assert csv_cell(None) == ""
    assert csv_cell(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00Z"


@given(st.from_regex(BBOX_PATTERN))
def test_every_bbox_of_the_documented_pattern_is_a_box_in_range(text: str) -> None:
    west, south, east, north = parse_bbox(text.rstrip("\n"))
    assert all(-180 <= v <= 180 for v in (west, east)) and all(-90 <= v <= 90 for v in (south, north))
