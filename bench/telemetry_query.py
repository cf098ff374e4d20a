"""Telemetry queries at fleet scale, on the storage path of the server it is pointed at.

    python bench/telemetry_query.py                                  # 1,000 batteries x 30 days, 1/min
    python bench/telemetry_query.py --batteries 50 --days 2 --samples 20       # a small run
    python bench/telemetry_query.py --admin-url postgresql://postgres@127.0.0.1:5433/postgres
                                                                     # (a server with TimescaleDB)

It creates a database of its own, migrates it, and loads `--batteries` x `--days` of readings at
one per `--step` seconds (43 M rows by default) with binary COPY, a day of the fleet at a time as
ingest would write it, ending now. Then it measures, in one run:
  1. the rollups' first refresh over everything loaded, and the refresh of one more hour of the
     whole fleet's readings (the cost per hour of ingested data): the plain path's scheduled
     refresh (api/telemetry/rollups.py), or TimescaleDB's refresh_continuous_aggregate; on
     TimescaleDB, chunks older than 7 days are compressed first, as its policy would;
  2. the plain path's dirty-hour log on the ingest write path: ingest's batch (COPY into a
     staging table, INSERT ... ON CONFLICT DO NOTHING) of 2,000 readings, with the trigger and without;
  3. p50/p99 through the API (in process, FastAPI and JSON included, no network) of a 30-day hourly
     query for one battery, a 24-hour raw query for one battery, the fleet latest, positions of the
     whole fleet and a 7-day hourly fleet aggregate, against the issue's targets;
  4. size on disk of the readings, the rollups and the database.
Progress goes to stderr; the last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [str(REPO), *[p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]]

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from api.app import create_app  # noqa: E402
from api.telemetry import rollups  # noqa: E402
from tests import services  # noqa: E402
from tests.conftest import make_settings, token_for  # noqa: E402

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TARGETS_MS = {  # p99 targets of issue 14
    "hourly_30d_one_battery": 20,
    "raw_24h_one_battery": 50,
    "fleet_latest": 50,
    "fleet_positions": 50,
    "fleet_7d_hourly": 200,
}
# One COPY row of (battery_id, ts, voltage, current, soc, temperature, lat, lon) in PostgreSQL's
# binary format: a field count, then each field's length and big-endian value.
ROW = np.dtype(
    [("n", ">i2")]
    + [
        item
        for name, kind in [
            ("battery_id", ">i8"),
            ("ts", ">i8"),
            ("voltage", ">f4"),
            ("current", ">f4"),
            ("soc", ">f4"),
            ("temperature", ">f4"),
            ("lat", ">f8"),
            ("lon", ">f8"),
        ]
        for item in ((f"{name}_len", ">i4"), (name, kind))
    ]
)
COPY = (
    "COPY telemetry (battery_id, ts, voltage, current, soc, temperature, lat, lon) FROM STDIN (FORMAT BINARY)"
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def readings(ids: np.ndarray, start: datetime, count: int, step: int, rng: np.random.Generator) -> bytes:
    """`count` readings per battery from `start`, `step` seconds apart, as binary COPY rows in time
    order (the fleet's readings of one moment, then the next), as ingest stores them."""
    n = len(ids) * count
    rows = np.zeros(n, dtype=ROW)
    rows["n"] = 8
    for name in ("battery_id", "ts", "lat", "lon"):
        rows[f"{name}_len"] = 8
    for name in ("voltage", "current", "soc", "temperature"):
        rows[f"{name}_len"] = 4
    first = int((start - PG_EPOCH).total_seconds() * 1_000_000)
    offsets = np.arange(count, dtype=np.int64) * step * 1_000_000
    rows["battery_id"] = np.tile(ids, count)
    rows["ts"] = np.repeat(first + offsets, len(ids))
    phase = np.repeat(np.arange(count) / 240.0, len(ids)) + np.tile(rng.random(len(ids)) * 6.28, count)
    rows["current"] = 25 * np.sin(phase) + rng.normal(0, 2, n)
    rows["soc"] = np.clip(55 + 40 * np.cos(phase), 0, 100)
    rows["voltage"] = 46 + rows["soc"] * 0.06 + rng.normal(0, 0.1, n)
    rows["temperature"] = 28 + 6 * np.abs(np.sin(phase)) + rng.normal(0, 0.5, n)
    rows["lat"] = np.tile(12.9 + rng.random(len(ids)) * 0.2, count)
    rows["lon"] = np.tile(77.5 + rng.random(len(ids)) * 0.2, count)
    return rows.tobytes()


def copy_rows(conn: psycopg.Connection, data: bytes) -> None:
    with conn.cursor() as cur, cur.copy(COPY) as copy:
        copy.write(b"PGCOPY\n\xff\r\n\0" + b"\0" * 8)  # signature, flags, header extension length
        copy.write(data)
        copy.write(b"\xff\xff")


def timescale(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is not None


def load(url: str, opts: argparse.Namespace) -> dict[str, Any]:
    """Batteries and their readings up to now; battery_latest as ingest leaves it."""
    rng = np.random.default_rng(14)
    per_day = 86400 // opts.step
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(days=opts.days)
    with psycopg.connect(url, autocommit=True) as conn:
        if timescale(conn):  # the benchmark compresses and refreshes itself, when it measures
            conn.execute("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs")
        dealer = conn.execute("INSERT INTO dealers (name) VALUES ('Bench Motors') RETURNING id").fetchone()[0]
        with (
            conn.cursor() as cur,
            cur.copy("COPY batteries (serial_number, dealer_id, online) FROM STDIN") as copy,
        ):
            for i in range(opts.batteries):
                copy.write_row((f"BENCH{i:06d}", dealer, i % 10 != 0))
        ids = np.array([r[0] for r in conn.execute("SELECT id FROM batteries ORDER BY id")], dtype=np.int64)
        started = time.perf_counter()
        chunk = max(1, 360_000 // per_day)  # batteries per COPY: about 360,000 rows each
        for day in range(opts.days):
            for at in range(0, len(ids), chunk):
                copy_rows(
                    conn, readings(ids[at : at + chunk], start + timedelta(days=day), per_day, opts.step, rng)
                )
            log(f"loaded day {day + 1}/{opts.days} ({(day + 1) * per_day * len(ids):,} rows)")
        load_s = time.perf_counter() - started
        conn.execute(
            """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc, temperature, lat, lon)
               SELECT DISTINCT ON (battery_id) battery_id, ts, voltage, current, soc, temperature, lat, lon
               FROM telemetry WHERE ts > %s ORDER BY battery_id, ts DESC""",
            (end - timedelta(hours=1),),
        )
        conn.execute("VACUUM ANALYZE")
    rows = opts.days * per_day * len(ids)
    return {"rows": rows, "load_s": round(load_s, 1), "load_rows_per_s": round(rows / load_s), "end": end}


async def _plain_refresh(url: str) -> float:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        started = time.perf_counter()
        while True:
            done = await rollups.refresh(conn, budget_s=3600)
            if done.hours < rollups.HOURS_PER_CHUNK:
                return time.perf_counter() - started


def refresh(url: str, ts: bool, window: tuple[datetime, datetime] | None) -> float:
    if not ts:
        return asyncio.run(_plain_refresh(url))
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for view in ("telemetry_hourly", "telemetry_daily"):
            bounds = (
                window
                if view == "telemetry_hourly" or window is None
                else (window[0].replace(hour=0), window[1] + timedelta(days=1))
            )
            conn.execute(
                f"CALL refresh_continuous_aggregate('{view}', %s::timestamptz, %s::timestamptz)",
                bounds or (None, None),
            )
        return time.perf_counter() - started


def measure_rollups(url: str, opts: argparse.Namespace, end: datetime) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        ts = timescale(conn)
        result: dict[str, Any] = {}
        if ts:
            started = time.perf_counter()
            conn.execute(
                "SELECT count(compress_chunk(c, true)) "
                "FROM show_chunks('telemetry', older_than => INTERVAL '7 days') c"
            )
            result["compress_s"] = round(time.perf_counter() - started, 1)
    hours = opts.days * 24
    log("refreshing the rollups over everything loaded")
    first = refresh(url, ts, None)
    result.update(backfill_s=round(first, 1), backfill_ms_per_hour=round(first * 1000 / hours, 1))
    # One more hour of the whole fleet, as it would arrive, then its refresh.
    with psycopg.connect(url, autocommit=True) as conn:
        ids = np.array([r[0] for r in conn.execute("SELECT id FROM batteries ORDER BY id")], dtype=np.int64)
        hour = (end - timedelta(hours=1)).replace(minute=0) - timedelta(hours=opts.days * 24 + 1)
        copy_rows(conn, readings(ids, hour, 3600 // opts.step, opts.step, np.random.default_rng(1)))
    result["one_hour_rows"] = len(ids) * (3600 // opts.step)
    result["one_hour_refresh_ms"] = round(refresh(url, ts, (hour, hour + timedelta(hours=1))) * 1000, 1)
    return result


def measure_dirty_log(url: str, batches: int) -> dict[str, Any] | None:
    """Ingest's batch write with the plain path's dirty-hour trigger and without (plain only)."""
    from ingest import queries as ingest_sql

    with psycopg.connect(url) as conn:
        if timescale(conn):
            return None
        ingest_sql.create_staging(conn)
        ids = [r[0] for r in conn.execute("SELECT id FROM batteries ORDER BY id LIMIT 1000")]
        base = datetime.now(UTC) + timedelta(minutes=1)
        times: dict[bool, list[float]] = {True: [], False: []}
        for n in range(batches * 2):
            with_trigger = n % 2 == 0
            switch = "ENABLE" if with_trigger else "DISABLE"
            conn.execute(f"ALTER TABLE telemetry {switch} TRIGGER telemetry_rollup_dirty")
            conn.commit()
            rows = [
                (
                    ids[i % len(ids)],
                    base + timedelta(seconds=n * 2 + i // len(ids)),
                    48.0,
                    1.0,
                    50.0,
                    25.0,
                    None,
                    None,
                )
                for i in range(2000)
            ]
            started = time.perf_counter()
            ingest_sql.copy_staging(conn, rows)
            ingest_sql.insert_telemetry(conn)
            ingest_sql.upsert_latest(conn)
            conn.commit()
            times[with_trigger].append((time.perf_counter() - started) * 1000)
        conn.execute("ALTER TABLE telemetry ENABLE TRIGGER telemetry_rollup_dirty")
        conn.commit()
    with_ms, without_ms = statistics.median(times[True]), statistics.median(times[False])
    return {
        "batch_rows": 2000,
        "batch_ms_with_log": round(with_ms, 2),
        "batch_ms_without_log": round(without_ms, 2),
        "overhead_pct": round((with_ms / without_ms - 1) * 100, 1),
    }


async def measure_queries(url: str, samples: int, end: datetime, days: int) -> dict[str, Any]:
    settings = make_settings(url, rate_limit_api="10000000/minute", db_pool_max=4)
    app = create_app(settings)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        admin = conn.execute(
            "INSERT INTO users (phone, name, role) VALUES ('+919899999999', 'bench', 'admin') RETURNING *"
        ).fetchone()
        serials = [r["serial_number"] for r in conn.execute("SELECT serial_number FROM batteries")]
        conn.commit()
    headers = {"Authorization": f"Bearer {token_for(admin)}"}
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    span = min(timedelta(days=30), timedelta(days=days))
    cases = {
        "hourly_30d_one_battery": lambda s: (
            f"/api/telemetry/{s}",
            {"from": iso(end - span), "to": iso(end), "interval": "1h"},
        ),
        "raw_24h_one_battery": lambda s: (
            f"/api/telemetry/{s}",
            {"from": iso(end - timedelta(days=1)), "to": iso(end), "limit": 10000},
        ),
        "fleet_latest": lambda s: ("/api/telemetry/latest", {}),
        "fleet_positions": lambda s: ("/api/telemetry/positions", {}),
        "fleet_7d_hourly": lambda s: (
            "/api/telemetry/fleet",
            {"from": iso(end - min(span, timedelta(days=7))), "to": iso(end), "interval": "1h"},
        ),
    }
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
            for name, build in cases.items():
                timings = []
                for n in range(samples + 3):
                    path, params = build(random.choice(serials))
                    started = time.perf_counter()
                    answer = await client.get(path, params=params)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert answer.status_code == 200, f"{name}: {answer.status_code} {answer.text[:300]}"
                    if n >= 3:  # the first few warm caches and the pool
                        timings.append(elapsed)
                body = answer.json()
                items = (
                    body
                    if isinstance(body, list)
                    else next(body[k] for k in ("points", "features", "buckets") if k in body)
                )
                size = len(items)
                timings.sort()
                p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
                out[name] = {
                    "p50_ms": round(statistics.median(timings), 2),
                    "p99_ms": round(p99, 2),
                    "target_p99_ms": TARGETS_MS[name],
                    "meets_target": p99 <= TARGETS_MS[name],
                    "items": size,
                }
                log(f"{name}: p50 {out[name]['p50_ms']} ms, p99 {out[name]['p99_ms']} ms ({size} items)")
    return out


def sizes(url: str) -> dict[str, float]:
    mb = lambda b: round(b / 2**20, 1)  # noqa: E731
    with psycopg.connect(url) as conn:
        if timescale(conn):
            hyper = "SELECT hypertable_size(%s)"
            views = dict(
                conn.execute(
                    """SELECT view_name, format('%I.%I', materialization_hypertable_schema,
                                                materialization_hypertable_name)
                       FROM timescaledb_information.continuous_aggregates"""
                ).fetchall()
            )
            result = {
                "telemetry": conn.execute(hyper, ("telemetry",)).fetchone()[0],
                "hourly": conn.execute(hyper, (views["telemetry_hourly"],)).fetchone()[0],
                "daily": conn.execute(hyper, (views["telemetry_daily"],)).fetchone()[0],
            }
        else:
            total = "SELECT pg_total_relation_size(%s)"
            result = {
                "telemetry": conn.execute(total, ("telemetry",)).fetchone()[0],
                "hourly": conn.execute(total, ("telemetry_hourly_store",)).fetchone()[0],
                "daily": conn.execute(total, ("telemetry_daily_store",)).fetchone()[0],
            }
        result["database"] = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {f"{k}_mb": mb(v or 0) for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batteries", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--step", type=int, default=60, help="seconds between a battery's readings")
    parser.add_argument("--samples", type=int, default=200, help="requests per query measured")
    parser.add_argument("--batches", type=int, default=50, help="ingest batches per variant (dirty-hour log)")
    parser.add_argument(
        "--admin-url", default=None, help="server to create the database on (default: the tests')"
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    opts = parser.parse_args()
    admin = opts.admin_url or services.admin_url()
    url = services.create_database(admin)
    log(f"database {url}")
    try:
        with psycopg.connect(url) as conn:
            storage = "timescale" if timescale(conn) else "plain"
        loaded = load(url, opts)
        end = loaded.pop("end")
        rollup = measure_rollups(url, opts, end)
        queries = asyncio.run(measure_queries(url, opts.samples, end, opts.days))
        size = sizes(url)
        dirty = measure_dirty_log(url, opts.batches)  # last: its readings are not part of the fleet
        result = {
            "bench": "telemetry_query",
            "storage": storage,
            "batteries": opts.batteries,
            "days": opts.days,
            "step_s": opts.step,
            **loaded,
            "rollup_refresh": rollup,
            "dirty_hour_log": dirty,
            "queries": queries,
            "all_targets_met": all(q["meets_target"] for q in queries.values()),
            "size": size,
        }
    finally:
        if not opts.keep:
            services.drop_database(admin, url)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
