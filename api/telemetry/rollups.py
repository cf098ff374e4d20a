"""Plain PostgreSQL upkeep of telemetry: the incremental rollup refresh and retention by batches.

On TimescaleDB both are the extension's policies (migrations 0010 and 0065) and these do nothing.

Refresh: the hours logged by the insert trigger (0065) and now complete are re-aggregated from raw
readings into `telemetry_hourly_store`, the days holding them (and days completed since the last
run) from the hourly store into `telemetry_daily_store`, and the watermarks moved, in one
transaction per chunk of hours. A transaction-scoped advisory lock lets one refresh run at a time;
a second one, started meanwhile, does nothing. A log row committed while a refresh runs is not seen
by its DELETE and stays for the next run, so no hour is forgotten.

Retention: readings older than the retention interval are deleted a batch at a time, each batch its
own transaction, so no statement holds millions of row locks or one huge WAL burst.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from api.telemetry import queries
from api.telemetry.buckets import ORIGIN

log = logging.getLogger(__name__)

_REFRESH_LOCK = 0x746C7268  # "tlrh"
_RETENTION_LOCK = 0x746C7274  # "tlrt"
HOURS_PER_CHUNK = 48


@dataclass
class Refreshed:
    """What one refresh did."""

    storage: str
    hours: int = 0
    days: int = 0
    chunks: int = 0
    busy: bool = False
    seconds: float = 0.0


_CLAIM_HOURS = """
DELETE FROM telemetry_dirty_hours
WHERE bucket IN (SELECT DISTINCT bucket FROM telemetry_dirty_hours
                 WHERE bucket < %(now_hour)s ORDER BY bucket LIMIT %(chunk)s)
RETURNING bucket
"""

_NOW = """
SELECT date_bin(INTERVAL '1 hour', statement_timestamp(), %(origin)s) AS now_hour,
       date_bin(INTERVAL '1 day', statement_timestamp(), %(origin)s) AS today,
       nullif(daily_through, '-infinity') AS daily_through
FROM telemetry_rollup_state
"""

_HOURLY = f"""
INSERT INTO telemetry_hourly_store (battery_id, bucket, {queries.ROLLUP_COLUMNS})
SELECT r.*
FROM unnest(%(hours)s::timestamptz[]) AS h(start)
CROSS JOIN LATERAL (
    SELECT battery_id, h.start AS bucket, {queries.full_raw_columns("plain")}
    FROM telemetry WHERE ts >= h.start AND ts < h.start + INTERVAL '1 hour'
    GROUP BY battery_id) r
"""  # noqa: S608 - constant column lists

_DAILY = f"""
INSERT INTO telemetry_daily_store (battery_id, bucket, {queries.ROLLUP_COLUMNS})
SELECT r.*
FROM unnest(%(days)s::timestamptz[]) AS d(start)
CROSS JOIN LATERAL (
    SELECT battery_id, d.start AS bucket, {queries.full_combined_columns("plain")}
    FROM telemetry_hourly_store WHERE bucket >= d.start AND bucket < d.start + INTERVAL '1 day'
    GROUP BY battery_id) r
"""  # noqa: S608 - constant column lists

_NEW_DAYS = """
SELECT DISTINCT date_bin(INTERVAL '1 day', bucket, %(origin)s) AS day FROM telemetry_hourly_store
WHERE bucket >= %(since)s AND bucket < %(today)s
"""

# The hourly watermark stops at the oldest complete hour still to refresh, so that an hour not
# yet re-aggregated is still computed from raw readings when read.
_ADVANCE = """
UPDATE telemetry_rollup_state SET
    hourly_through = least(%(now_hour)s,
                           (SELECT min(bucket) FROM telemetry_dirty_hours WHERE bucket < %(now_hour)s)),
    daily_through = least(%(today)s,
                          (SELECT date_bin(INTERVAL '1 day', min(bucket), %(origin)s)
                           FROM telemetry_dirty_hours WHERE bucket < %(now_hour)s)),
    refreshed_at = statement_timestamp()
"""


async def refresh(conn: AsyncConnection, *, budget_s: float = 30.0) -> Refreshed:
    """Re-aggregate the complete hours that received readings (plain PostgreSQL; autocommit `conn`)."""
    started = time.monotonic()
    storage = await queries.storage_of(conn)
    done = Refreshed(storage=storage)
    if storage == "timescale":
        return done
    while True:
        async with conn.transaction():
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS got", (_REFRESH_LOCK,))
            if not (await cur.fetchone())["got"]:
                done.busy = True
                break
            now = await (await conn.execute(_NOW, {"origin": ORIGIN})).fetchone()
            params: dict[str, Any] = {"origin": ORIGIN, "chunk": HOURS_PER_CHUNK, **now}
            hours = sorted({r["bucket"] for r in await (await conn.execute(_CLAIM_HOURS, params)).fetchall()})
            if hours:
                await conn.execute("DELETE FROM telemetry_hourly_store WHERE bucket = ANY(%s)", (hours,))
                await conn.execute(_HOURLY, {"hours": hours})
            # Days completed since the last run, and the days of the hours just refreshed.
            since = now["daily_through"] or min(hours, default=now["today"])
            cur = await conn.execute(_NEW_DAYS, {**params, "since": since})
            days = {r["day"] for r in await cur.fetchall()}
            days |= {d for d in (_day(h) for h in hours) if d < now["today"]}
            if days:
                ordered = sorted(days)
                await conn.execute("DELETE FROM telemetry_daily_store WHERE bucket = ANY(%s)", (ordered,))
                await conn.execute(_DAILY, {"days": ordered})
            await conn.execute(_ADVANCE, params)
        done.hours += len(hours)
        done.days += len(days)
        done.chunks += 1
        if len(hours) < HOURS_PER_CHUNK:
            break
        log.info("telemetry rollup refresh catching up", extra={"hours": done.hours, "days": done.days})
        if time.monotonic() - started > budget_s:
            break
    done.seconds = round(time.monotonic() - started, 3)
    return done


def _day(hour: Any) -> Any:
    return ORIGIN + ((hour - ORIGIN) // timedelta(days=1)) * timedelta(days=1)


@dataclass
class Pruned:
    storage: str
    deleted: int = 0
    batches: int = 0
    busy: bool = False


_DELETE_OLD = """
DELETE FROM telemetry WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM telemetry WHERE ts < statement_timestamp() - %(keep)s::interval LIMIT %(batch)s))
"""


async def prune(conn: AsyncConnection, *, keep: str, batch: int, budget_s: float = 60.0) -> Pruned:
    """Delete readings older than `keep` (an interval), a batch per transaction (plain PostgreSQL)."""
    started = time.monotonic()
    storage = await queries.storage_of(conn)
    done = Pruned(storage=storage)
    if storage == "timescale":
        return done
    while time.monotonic() - started < budget_s:
        async with conn.transaction():
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS got", (_RETENTION_LOCK,))
            if not (await cur.fetchone())["got"]:
                done.busy = True
                break
            deleted = (await conn.execute(_DELETE_OLD, {"keep": keep, "batch": batch})).rowcount
        done.deleted += deleted
        done.batches += 1
        if deleted < batch:
            break
        log.info("telemetry retention deleting", extra={"deleted": done.deleted})
    return done
