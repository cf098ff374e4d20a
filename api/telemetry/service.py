"""Telemetry use cases, scoped to the caller like the batteries they belong to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.auth.tokens import Principal
from api.batteries.service import read_scope, visible_battery
from api.errors import BadRequest
from api.telemetry import queries
from api.telemetry.buckets import (
    Cursor,
    IntervalError,
    Source,
    aligned_range,
    bucket_count,
    csv_cell,
    fitting_interval,
    iso_duration,
    parse_interval,
    source_for,
)
from api.telemetry.models import Switches
from api.telemetry.queries import Storage

DEFAULT_SPAN = timedelta(hours=24)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # no battery reported before, or will after LATEST
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
RAW_INDEX = {name: i for i, name in enumerate(queries.RAW_COLUMNS.split(", "))}
EXPORT_PAGE = 2000  # raw readings per page of a CSV export
DIGITS = 4  # readings are float4 (about 7 significant digits): 48.29999923706055 answers 48.3


def _round(value: float | None, digits: int = DIGITS) -> float | None:
    return None if value is None else round(value, digits)


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """[from, to) in UTC: `to` defaults to now, `from` to a day before `to`. A time before 1970 or
    after 2200 is taken as that edge (no battery reported before, none will after), so any RFC 3339
    time the document allows is answered; a range of any width is too (raw readings are paged, and
    buckets are held to the points cap)."""
    end = min(max(end or datetime.now(UTC), EARLIEST), LATEST).astimezone(UTC)
    start = min(max(start or end - DEFAULT_SPAN, EARLIEST), LATEST).astimezone(UTC)
    if start >= end:
        raise BadRequest("`from` must be before `to`")
    return start, end


def interval_of(text: str) -> timedelta:
    try:
        return parse_interval(text)
    except IntervalError as exc:
        raise BadRequest(str(exc), error="Invalid interval") from None


def check_points(start: datetime, end: datetime, interval: timedelta, max_points: int) -> None:
    """Refuse a bucketed request over the cap, naming the finest interval that fits."""
    count = bucket_count(start, end, interval)
    if count <= max_points:
        return
    fits = fitting_interval(start, end, max_points)
    hint = f"use interval={iso_duration(fits)} or coarser" if fits else "ask for a shorter range"
    raise BadRequest(
        f"{count} buckets of {iso_duration(interval)} exceed the cap of {max_points} points: {hint}",
        error="Too many points",
        code="TOO_MANY_POINTS",
        extra={"max_points": max_points, "suggested_interval": iso_duration(fits) if fits else None},
    )


def _choose_source(interval: timedelta, *, use_rollups: bool) -> Source:
    return source_for(interval) if use_rollups else "raw"


async def battery_series(
    conn: AsyncConnection,
    storage: Storage,
    *,
    principal: Principal,
    serial: str,
    start: datetime | None,
    end: datetime | None,
    interval: str | None,
    agg: str,
    fields: Sequence[str],
    limit: int,
    cursor: str | None,
    max_points: int,
    use_rollups: bool = True,
) -> dict[str, Any]:
    """A battery's readings: raw (a page) or in buckets (whole buckets covering the range)."""
    battery = await visible_battery(conn, principal=principal, serial=serial)
    start, end = time_range(start, end)
    body: dict[str, Any] = {
        "serial_number": battery["serial_number"],
        "battery_id": battery["id"],  # not answered: for the CSV export
        "fields": list(fields),
    }
    if interval is None:
        after = _cursor(cursor)
        rows = await queries.battery_readings(
            conn,
            battery_id=battery["id"],
            start=max(start, after + timedelta(microseconds=1)) if after else start,
            end=end,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        at = [RAW_INDEX[f] for f in fields]
        points = [{"ts": r[0], **dict(zip(fields, (r[i] for i in at), strict=True))} for r in rows]
        return {
            **body,
            "from": start,
            "to": end,
            "interval": None,
            "agg": None,
            "source": "raw",
            "points": points,
            "next_cursor": Cursor(rows[-1][0]).encode() if more else None,
        }
    step = interval_of(interval)
    check_points(start, end, step, max_points)
    first, stop = aligned_range(start, end, step)
    source = _choose_source(step, use_rollups=use_rollups)
    rows = await queries.battery_buckets(
        conn,
        storage,
        battery_id=battery["id"],
        source=source,
        interval=step,
        start=first,
        end=stop,
        pairs=[(f, agg) for f in fields],
    )
    points = [
        {"ts": r["bucket"], "readings": r["readings"], **{f: _round(r[f"{f}_{agg}"]) for f in fields}}
        for r in rows
    ]
    return {
        **body,
        "from": first,
        "to": stop,
        "interval": iso_duration(step),
        "agg": agg,
        "source": source,
        "points": points,
        "next_cursor": None,
    }


def _cursor(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return Cursor.decode(text).after
    except ValueError as exc:
        raise BadRequest(str(exc), error="Invalid cursor") from None


async def export_csv(
    pool: AsyncConnectionPool, series: dict[str, Any], *, page: int = EXPORT_PAGE
) -> AsyncIterator[str]:
    """The series as CSV lines. Bucketed answers are already capped; raw readings are read a page
    at a time after the last one sent (the keyset of the raw cursor), each page in a short use of a
    pool connection: a client that reads slowly, or not at all, holds no connection and no
    transaction while the answer waits on it, and only one page is in memory."""
    fields = series["fields"]
    serial = csv_cell(series["serial_number"])
    if series["interval"] is not None:
        yield ",".join(["serial_number", "ts", "readings", *fields]) + "\r\n"
        for p in series["points"]:
            yield ",".join([serial, *(csv_cell(p[k]) for k in ("ts", "readings", *fields))]) + "\r\n"
        return
    yield ",".join(["serial_number", "ts", *fields]) + "\r\n"
    start, at = series["from"], [RAW_INDEX[f] for f in fields]
    while True:
        async with pool.connection() as conn:
            rows = await queries.battery_readings(
                conn, battery_id=series["battery_id"], start=start, end=series["to"], limit=page
            )
        if rows:
            yield "".join(f"{serial},{','.join(csv_cell(r[i]) for i in (0, *at))}\r\n" for r in rows)
        if len(rows) < page:
            return
        start = rows[-1][0] + timedelta(microseconds=1)  # readings are stored to the microsecond


async def latest(
    conn: AsyncConnection,
    *,
    principal: Principal,
    dealer_id: int | None,
    online: bool | None,
    soc_below: float | None,
    stale_minutes: int | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    dealer, owner = read_scope(principal, dealer_id=dealer_id)
    rows = await queries.latest(
        conn,
        dealer_id=dealer,
        owner_id=owner,
        online=online,
        soc_below=soc_below,
        stale=None if stale_minutes is None else timedelta(minutes=stale_minutes),
        limit=limit,
        offset=offset,
    )
    for r in rows:
        for key in ("voltage", "current", "soc", "temperature"):
            r[key] = _round(r[key])
        r["age_seconds"] = _round(r["age_seconds"], 1)
    return rows


async def positions(
    conn: AsyncConnection,
    *,
    principal: Principal,
    dealer_id: int | None,
    bbox: tuple[float, float, float, float] | None,
) -> dict[str, Any]:
    """The batteries' latest positions as a GeoJSON FeatureCollection."""
    dealer, owner = read_scope(principal, dealer_id=dealer_id)
    rows = await queries.positions(conn, dealer_id=dealer, owner_id=owner, bbox=bbox)
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": (r["lon"], r["lat"])},
                "properties": {
                    "serial_number": r["serial_number"],
                    "soc": _round(r["soc"]),
                    "status": r["status"],
                    "online": r["online"],
                    **{k: r[k] for k in Switches.model_fields},
                    "last_seen": r["ts"],
                },
            }
            for r in rows
        ],
    }


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """`west,south,east,north` in degrees (GeoJSON's order); west > east crosses the antimeridian."""
    if text is None:
        return None
    west, south, east, north = (float(v) for v in text.split(","))  # the route's pattern holds
    return west, south, east, north


async def fleet(
    conn: AsyncConnection,
    storage: Storage,
    *,
    principal: Principal,
    dealer_id: int | None,
    start: datetime | None,
    end: datetime | None,
    interval: str,
    max_points: int,
    use_rollups: bool = True,
) -> dict[str, Any]:
    """The caller's fleet per bucket."""
    dealer, owner = read_scope(principal, dealer_id=dealer_id)
    start, end = time_range(start, end)
    step = interval_of(interval)
    check_points(start, end, step, max_points)
    first, stop = aligned_range(start, end, step)
    source = _choose_source(step, use_rollups=use_rollups)
    rows = await queries.fleet_buckets(
        conn, storage, source=source, interval=step, start=first, end=stop, dealer_id=dealer, owner_id=owner
    )
    buckets = []
    for r in rows:
        p10, p50, p90 = r["soc_p"] or (None, None, None)
        buckets.append(
            {
                "ts": r["bucket"],
                "batteries_reporting": r["batteries_reporting"],
                "readings": r["readings"],
                "soc_mean": _round(r["soc_mean"]),
                "soc_p10": _round(p10),
                "soc_p50": _round(p50),
                "soc_p90": _round(p90),
                "energy_charged_kwh": _round(r["energy_charged_wh"] / 1000, 6),
                "energy_discharged_kwh": _round(r["energy_discharged_wh"] / 1000, 6),
            }
        )
    return {"from": first, "to": stop, "interval": iso_duration(step), "source": source, "buckets": buckets}
