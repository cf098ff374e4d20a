"""Rollups answer what raw readings answer, on whichever storage path this server gives, late
store-and-forward readings included; the plain refresh is safe twice and from two connections at
once; plain retention deletes in batches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from api.auth.tokens import Principal
from api.telemetry import queries, rollups, service
from tests import factories
from tests.api.telemetry.conftest import reading, series, store

ADMIN = Principal(user_id=1, role="admin", dealer_id=None, consumer_id=None, name="admin")


def _hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


async def _refresh(url: str) -> list[rollups.Refreshed]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        if await queries.storage_of(conn) == "timescale":
            for view in ("telemetry_hourly", "telemetry_daily"):
                await conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
            return []
        return [await rollups.refresh(conn)]


async def _answers(url: str, serial: str, start: datetime, end: datetime, interval: str) -> dict[str, Any]:
    """The battery's and the fleet's answers from the rollups and computed from raw readings."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        storage = await queries.storage_of(conn)
        out: dict[str, Any] = {"storage": storage}
        for use in (True, False):
            key = "rollup" if use else "raw"
            out[key] = {
                agg: (
                    await service.battery_series(
                        conn,
                        storage,
                        principal=ADMIN,
                        serial=serial,
                        start=start,
                        end=end,
                        interval=interval,
                        agg=agg,
                        fields=["voltage", "current", "soc", "temperature"],
                        limit=1,
                        cursor=None,
                        max_points=10_000,
                        use_rollups=use,
                    )
                )
                for agg in ("avg", "min", "max", "first", "last")
            }
            out[key]["fleet"] = await service.fleet(
                conn,
                storage,
                principal=ADMIN,
                dealer_id=None,
                start=start,
                end=end,
                interval=interval,
                max_points=10_000,
                use_rollups=use,
            )
        return out


def _numbers(point: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in point.items() if k != "ts"}


def _same(rollup: dict[str, Any], raw: dict[str, Any]) -> None:
    for agg in ("avg", "min", "max", "first", "last"):
        a, b = rollup[agg], raw[agg]
        assert a["source"] != "raw" and b["source"] == "raw"
        assert [p["ts"] for p in a["points"]] == [p["ts"] for p in b["points"]]
        for pa, pb in zip(a["points"], b["points"], strict=True):
            assert _numbers(pa) == pytest.approx(_numbers(pb), abs=2e-4), (agg, pa, pb)
    fa, fb = rollup["fleet"]["buckets"], raw["fleet"]["buckets"]
    assert [b["ts"] for b in fa] == [b["ts"] for b in fb]
    for x, y in zip(fa, fb, strict=True):
        assert _numbers(x) == pytest.approx(_numbers(y), abs=2e-4)


@pytest.mark.parametrize("interval", ["1h", "6h", "1d"])
def test_rollups_equal_raw_including_late_readings(
    db: psycopg.Connection, database_url: str, interval: str
) -> None:
    battery = factories.battery(db)
    start = _hour(datetime.now(UTC)) - timedelta(days=2)
    with db.transaction():
        store(db, series(battery["id"], start, 30 * 60, step=timedelta(seconds=60)))
    asyncio.run(_refresh(database_url))
    # A store-and-forward batch arrives late into hours already aggregated.
    late = [
        reading(battery["id"], start + timedelta(minutes=3 * i, seconds=30), 1000 + i) for i in range(200)
    ]
    with db.transaction():
        store(db, late)
    end = start + timedelta(days=2)
    stale = asyncio.run(_answers(database_url, battery["serial_number"], start, end, interval))
    assert stale["rollup"]["avg"]["points"][0]["readings"] < stale["raw"]["avg"]["points"][0]["readings"]
    asyncio.run(_refresh(database_url))
    fresh = asyncio.run(_answers(database_url, battery["serial_number"], start, end, interval))
    assert sum(p["readings"] for p in fresh["rollup"]["avg"]["points"]) == 30 * 60 + 200
    _same(fresh["rollup"], fresh["raw"])


def test_the_current_hour_is_answered_before_any_refresh(db: psycopg.Connection, database_url: str) -> None:
    battery = factories.battery(db)
    now = datetime.now(UTC).replace(microsecond=0)
    with db.transaction():
        store(db, [reading(battery["id"], now - timedelta(seconds=s), s) for s in range(1, 40)])
    answers = asyncio.run(
        _answers(
            database_url, battery["serial_number"], now - timedelta(hours=2), now + timedelta(hours=1), "1h"
        )
    )
    _same(answers["rollup"], answers["raw"])
    assert sum(p["readings"] for p in answers["rollup"]["avg"]["points"]) == 39


def _plain(db: psycopg.Connection) -> None:
    if db.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
        pytest.skip("TimescaleDB: its refresh and retention policies do this work")


def test_the_plain_refresh_is_safe_twice_and_from_two_connections_at_once(
    db: psycopg.Connection, database_url: str
) -> None:
    _plain(db)
    battery = factories.battery(db)
    start = _hour(datetime.now(UTC)) - timedelta(days=3)
    with db.transaction():
        store(db, series(battery["id"], start, 2000))

    async def race() -> list[rollups.Refreshed]:
        conns = [
            await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row)
            for _ in range(2)
        ]
        try:
            return list(await asyncio.gather(*(rollups.refresh(c) for c in conns)))
        finally:
            for c in conns:
                await c.close()

    results = asyncio.run(race())
    assert sum(r.hours for r in results) >= 34  # every hour refreshed once, by one of them
    again = asyncio.run(_refresh(database_url))[0]
    assert again.hours == 0 and not again.busy
    rows = db.execute(
        "SELECT count(*) AS n, sum(readings) AS readings FROM telemetry_hourly_store WHERE battery_id = %s",
        (battery["id"],),
    ).fetchone()
    assert (rows["n"], rows["readings"]) == (34, 2000)
    assert (
        db.execute(
            "SELECT sum(readings) AS r FROM telemetry_daily_store WHERE battery_id = %s", (battery["id"],)
        ).fetchone()["r"]
        == 2000
    )


def test_an_insert_logs_its_hours_once_per_statement(db: psycopg.Connection) -> None:
    _plain(db)
    battery = factories.battery(db)
    start = datetime(2025, 6, 1, 10, 30, tzinfo=UTC)
    with db.transaction():
        store(db, series(battery["id"], start, 120))  # 10:30 to 12:29: three hours
        logged = db.execute(
            "SELECT bucket FROM telemetry_dirty_hours WHERE bucket >= %s AND bucket < %s ORDER BY bucket",
            (datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 2, tzinfo=UTC)),
        ).fetchall()
    assert [r["bucket"].hour for r in logged] == [10, 11, 12]


def test_plain_retention_deletes_old_readings_in_batches(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url, autocommit=True, row_factory=dict_row) as db:
        _plain(db)
        battery = factories.battery(db)
        old = datetime.now(UTC) - timedelta(days=400)
        with db.transaction():
            store(db, series(battery["id"], old, 2500))
            store(db, series(battery["id"], datetime.now(UTC) - timedelta(days=1), 100))

    async def prune() -> rollups.Pruned:
        async with await psycopg.AsyncConnection.connect(
            fresh_database_url, autocommit=True, row_factory=dict_row
        ) as c:
            return await rollups.prune(c, keep="365 days", batch=1000)

    done = asyncio.run(prune())
    assert (done.deleted, done.batches) == (2500, 3)
    with psycopg.connect(fresh_database_url) as db:
        assert db.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 100
    assert asyncio.run(prune()).deleted == 0


@pytest.mark.timescale
def test_timescale_rollups_are_continuous_aggregates_with_refresh_policies(db: psycopg.Connection) -> None:
    if not db.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
        pytest.skip("TimescaleDB is not loaded on this server (shared_preload_libraries)")
    views = {
        r["view_name"]: r["materialized_only"]
        for r in db.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        )
    }
    assert views == {"telemetry_hourly": False, "telemetry_daily": False}  # real-time, both
    policies = {
        r["hypertable_name"]: r["schedule_interval"]
        for r in db.execute(
            """SELECT hypertable_name, schedule_interval FROM timescaledb_information.jobs
               WHERE proc_name = 'policy_refresh_continuous_aggregate'"""
        )
    }
    assert policies == {"telemetry_hourly": timedelta(minutes=5), "telemetry_daily": timedelta(hours=1)}
