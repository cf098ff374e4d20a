"""SQL of the ingest writer: staging, telemetry, battery_latest, batteries, dead_letters.

Functions take the connection first and never commit: the writer owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

# One row per reading; ON COMMIT DELETE ROWS empties it at the end of every batch.
CREATE_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS ingest_staging (
    battery_id   bigint NOT NULL,
    ts           timestamptz NOT NULL,
    voltage      real NOT NULL,
    current      real NOT NULL,
    soc          real NOT NULL,
    temperature  real,
    lat          double precision,
    lon          double precision
) ON COMMIT DELETE ROWS
"""

COPY_STAGING = (
    "COPY ingest_staging (battery_id, ts, voltage, current, soc, temperature, lat, lon) "
    "FROM STDIN (FORMAT BINARY)"
)
STAGING_TYPES = ["int8", "timestamptz", "float4", "float4", "float4", "float4", "float8", "float8"]

# A reading is identified by (battery_id, ts): delivered twice, stored once.
INSERT_TELEMETRY = """
INSERT INTO telemetry (battery_id, ts, voltage, current, soc, temperature, lat, lon, ingested_at)
SELECT battery_id, ts, voltage, current, soc, temperature, lat, lon, statement_timestamp()
FROM ingest_staging
ON CONFLICT (battery_id, ts) DO NOTHING
"""

# The batch's newest reading per battery, kept only if newer than what is there. Ordered by
# battery so that concurrent workers take row locks in the same order.
UPSERT_LATEST = """
INSERT INTO battery_latest AS l (battery_id, ts, voltage, current, soc, temperature, lat, lon, updated_at)
SELECT DISTINCT ON (battery_id) battery_id, ts, voltage, current, soc, temperature, lat, lon, now()
FROM ingest_staging
ORDER BY battery_id, ts DESC
ON CONFLICT (battery_id) DO UPDATE SET
    ts = EXCLUDED.ts, voltage = EXCLUDED.voltage, current = EXCLUDED.current, soc = EXCLUDED.soc,
    temperature = EXCLUDED.temperature, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
    updated_at = EXCLUDED.updated_at
WHERE EXCLUDED.ts > l.ts
"""

# Rows are locked in id order first, so that two workers touching the same batteries
# queue behind each other instead of deadlocking.
LOCK_BATTERIES = "SELECT id FROM batteries WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE"

TOUCH_LAST_SEEN = """
UPDATE batteries b SET last_seen_at = v.seen
FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, seen)
WHERE b.id = v.id AND (b.last_seen_at IS NULL OR b.last_seen_at < v.seen)
"""

# A status older than the reported state already stored is stale: on a shared subscription two
# workers can take one battery's messages out of order. A status is as old as its ts (never later
# than its receipt); the will message, which has no ts, as its receipt. It returns what the writer
# needs to keep `status` with the reported switches and to see a contradiction: the reported state
# before and after, the desired one, and whether a command is still on its way.
APPLY_STATUS = """
WITH before AS (SELECT id AS before_id, reported_enabled AS was_enabled, reported_spec AS was_spec
                FROM batteries WHERE id = %(id)s)
UPDATE batteries SET
    online = %(online)s,
    reported_enabled = COALESCE(%(enabled)s, reported_enabled),
    reported_spec = COALESCE(%(spec)s, reported_spec),
    firmware = COALESCE(%(firmware)s, firmware),
    reported_at = COALESCE(%(reported_at)s, reported_at),
    last_seen_at = GREATEST(last_seen_at, %(seen)s)
FROM before
WHERE id = before_id AND (reported_at IS NULL OR reported_at <= %(as_of)s)
RETURNING id, serial_number, status, desired_status, desired_enabled, desired_spec, reported_enabled,
    reported_spec, was_enabled, was_spec,
    EXISTS (SELECT 1 FROM commands c WHERE c.battery_id = batteries.id
            AND c.status IN ('queued', 'sent', 'delivered')) AS command_pending
"""

# Only for batteries whose status changes: naming `status` fires the pack-list NOTIFY (0035). The
# changes are logged by this one INSERT, not row by row by the trigger (migration 0036).
UPDATE_STATUSES = """
WITH changed AS (
    UPDATE batteries b SET status = v.status, updated_at = now()
    FROM unnest(%s::bigint[], %s::text[]) AS v(id, status)
    WHERE b.id = v.id AND b.status <> v.status
    RETURNING b.id, v.status)
INSERT INTO battery_activity (battery_id, actor, action, detail)
SELECT c.id, 'device', 'status_changed', jsonb_build_object('from', p.was, 'to', c.status)
FROM changed c JOIN unnest(%s::bigint[], %s::text[]) AS p(id, was) USING (id)
"""

INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (topic, reason, detail, received_at, payload, payload_size)
VALUES (%s, %s, %s, %s, %s, %s)
"""


def create_staging(conn: psycopg.Connection[Any]) -> None:
    conn.execute(CREATE_STAGING)


def find_batteries(conn: psycopg.Connection[Any], serials: Sequence[str]) -> dict[str, tuple[int, bool]]:
    """serial → (battery id, soft-deleted) for the serials that exist."""
    rows = conn.execute(
        "SELECT serial_number, id, deleted_at IS NOT NULL FROM batteries WHERE serial_number = ANY(%s)",
        (list(serials),),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def copy_staging(conn: psycopg.Connection[Any], rows: Iterable[Sequence[Any]]) -> int:
    count = 0
    with conn.cursor() as cur, cur.copy(COPY_STAGING) as copy:
        copy.set_types(STAGING_TYPES)
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def insert_telemetry(conn: psycopg.Connection[Any]) -> int:
    """Move staged readings into telemetry; return how many were new."""
    return conn.execute(INSERT_TELEMETRY).rowcount


def upsert_latest(conn: psycopg.Connection[Any]) -> None:
    conn.execute(UPSERT_LATEST)


def lock_batteries(conn: psycopg.Connection[Any], ids: Iterable[int]) -> None:
    conn.execute(LOCK_BATTERIES, (sorted(ids),))


def touch_last_seen(conn: psycopg.Connection[Any], seen: dict[int, datetime]) -> None:
    ids = sorted(seen)
    conn.execute(TOUCH_LAST_SEEN, (ids, [seen[i] for i in ids]))


def apply_statuses(conn: psycopg.Connection[Any], updates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply statuses in order; the batteries each one changed (a stale status changes none)."""
    applied: list[dict[str, Any]] = []
    with conn.cursor(row_factory=dict_row) as cur:
        cur.executemany(APPLY_STATUS, updates, returning=True)
        while True:
            applied += cur.fetchall()
            if not cur.nextset():
                return applied


def update_statuses(conn: psycopg.Connection[Any], statuses: dict[int, tuple[str, str]]) -> None:
    """Set the status the devices' reports make (id → (was, now)); the activity log names the device."""
    ids = sorted(statuses)
    conn.execute("SELECT set_config('packfleet.status_logged', 'yes', true)")
    conn.execute(
        UPDATE_STATUSES,
        (ids, [statuses[i][1] for i in ids], ids, [statuses[i][0] for i in ids]),
    )
    conn.execute("SELECT set_config('packfleet.status_logged', '', true)")


def insert_dead_letters(conn: psycopg.Connection[Any], letters: Sequence[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(INSERT_DEAD_LETTER, letters)


# Oldest first, through dead_letters_received_idx; rows another purge holds are left to it.
PURGE_DEAD_LETTERS = """
DELETE FROM dead_letters WHERE id IN (
    SELECT id FROM dead_letters WHERE received_at < now() - %s::interval
    ORDER BY received_at LIMIT %s FOR UPDATE SKIP LOCKED)
"""


async def purge_dead_letters(conn: AsyncConnection[Any], *, older_than: timedelta, limit: int) -> int:
    """Delete up to `limit` dead letters received more than `older_than` ago; how many went."""
    cur = await conn.execute(PURGE_DEAD_LETTERS, (older_than, limit))
    return cur.rowcount
