"""Telemetry into numpy arrays, fast: each battery's readings packed by PostgreSQL into one binary
string, which numpy reads in one call.

Rows through psycopg (or COPY, one message per row) cost several microseconds of Python each: a week
of one-minute readings of a thousand batteries (10 M rows) took over a minute. Packed server-side
(`timestamptz_send` and `float4send`, big-endian, 24 bytes a reading), the same week is a thousand
values and the database's scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from psycopg import AsyncConnection

from api.analytics.estimator import Readings

_READING = np.dtype(
    [("ts", ">i8"), ("voltage", ">f4"), ("current", ">f4"), ("soc", ">f4"), ("temperature", ">f4")]
)
_PG_EPOCH_S = 946_684_800.0  # timestamptz_send counts microseconds from 2000-01-01 UTC

# One aggregate per battery (LATERAL): each reads its readings by the (battery_id, ts) index. The
# order inside a packed string is left to numpy (a stable sort on the time), so no sort is needed here.
_PACKED = """
    SELECT w.battery_id, p.packed
    FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS w (battery_id, since, until)
    CROSS JOIN LATERAL (
        SELECT string_agg(timestamptz_send(t.ts) || float4send(t.voltage) || float4send(t.current)
                          || float4send(t.soc) || float4send(coalesce(t.temperature, 'NaN'::real)),
                          ''::bytea) AS packed
        FROM telemetry t WHERE t.battery_id = w.battery_id AND t.ts >= w.since AND t.ts <= w.until) p
    WHERE p.packed IS NOT NULL
"""


@dataclass(frozen=True)
class Window:
    battery_id: int
    since: datetime
    until: datetime


def unpack(packed: bytes) -> Readings:
    """One battery's packed readings (the statement above) as arrays."""
    if len(packed) % _READING.itemsize:
        raise ValueError("packed readings are not of the expected shape")
    rows = np.frombuffer(packed, dtype=_READING)
    rows = rows[np.argsort(rows["ts"], kind="stable")]
    return Readings(
        t=rows["ts"].astype(np.float64) / 1e6 + _PG_EPOCH_S,
        voltage=rows["voltage"].astype(np.float64),
        current=rows["current"].astype(np.float64),
        soc=rows["soc"].astype(np.float64),
        temperature=rows["temperature"].astype(np.float64),
    )


async def fetch(conn: AsyncConnection, windows: list[Window]) -> dict[int, Readings]:
    """Each battery's readings in its window, oldest first (batteries without any are absent)."""
    cur = await conn.execute(
        _PACKED,
        ([w.battery_id for w in windows], [w.since for w in windows], [w.until for w in windows]),
        binary=True,
    )
    return {row["battery_id"]: unpack(row["packed"]) for row in await cur.fetchall()}
