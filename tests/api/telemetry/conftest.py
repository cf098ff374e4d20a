"""Readings for the telemetry tests, written with COPY like ingest does."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

import psycopg


def reading(battery_id: int, ts: datetime, i: int) -> tuple:
    """A deterministic, varied reading: charging and discharging, a temperature now and then missing."""
    current = round(20 * math.sin(i / 7), 2)
    temperature = None if i % 11 == 0 else 25 + (i % 13)
    lat, lon = 12.9 + (battery_id % 10) / 100, 77.5 + (battery_id % 7) / 100
    return (battery_id, ts, 48 + (i % 17) / 10, current, 20 + (i * 7) % 80, temperature, lat, lon)


def store(conn: psycopg.Connection, rows: Iterable[tuple]) -> int:
    """COPY readings into telemetry (one statement, as an ingest batch is)."""
    count = 0
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY telemetry (battery_id, ts, voltage, current, soc, temperature, lat, lon) FROM STDIN"
        ) as copy,
    ):
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def series(
    battery_id: int, start: datetime, count: int, step: timedelta = timedelta(minutes=1)
) -> list[tuple]:
    return [reading(battery_id, start + i * step, i) for i in range(count)]


def settle_rollups(conn: psycopg.Connection) -> None:
    """What TimescaleDB's refresh policies do within minutes, now: readings that arrive after a policy
    run materialized their hours (it runs in the test's database too) show in the continuous
    aggregates once refreshed. On plain PostgreSQL the views compute unrefreshed hours on read."""
    timescale = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if timescale:
        for view in ("telemetry_hourly", "telemetry_daily"):
            conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
