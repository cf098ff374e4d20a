"""SQL of the telemetry queries and rollups. Functions take `conn` first and never commit.

Bucketed answers come from one of three levels: raw readings (`telemetry`), the hourly rollup
(`telemetry_hourly`) or the daily one (`telemetry_daily`). Both rollups have the same columns on
both storage paths (TimescaleDB continuous aggregates, or tables kept by `rollups.refresh` behind
views of the same names on plain PostgreSQL; migration 0065). The aggregate expressions over raw
readings below are the ones the plain refresh stores, so an answer read from a rollup and one
computed from raw readings match (tests/api/telemetry/test_rollups.py checks it on both paths).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from api.telemetry.buckets import ORIGIN, Source

Storage = Literal["timescale", "plain"]
FIELDS = ("voltage", "current", "soc", "temperature")
AGGS = ("avg", "min", "max", "first", "last")

# Energy of a battery-bucket: Σ V·I over its readings × their mean spacing (span / (n − 1)), so n
# evenly spaced readings cover n spacings (the whole bucket at a steady rate). One reading: 0.
_ENERGY = (
    "coalesce(sum(voltage::float8 * greatest({sign}current::float8, 0)) "
    "* date_part('epoch', max(ts) - min(ts)) / nullif(count(*) - 1, 0) / 3600, 0)"
)


def bucket_expr(storage: Storage, column: str = "ts") -> str:
    """The bucket of `column` for %(interval)s from the shared origin (time_bucket or date_bin)."""
    fn = "time_bucket" if storage == "timescale" else "date_bin"
    return f"{fn}(%(interval)s::interval, {column}, %(origin)s::timestamptz)"


def _first_last(storage: Storage, kind: str, value: str, order: str) -> str:
    if storage == "timescale":
        return f"{kind}({value}, {order})"
    direction = "" if kind == "first" else " DESC"
    return f"(array_agg({value} ORDER BY {order}{direction}))[1]"


def _raw_agg(storage: Storage, field: str, agg: str) -> str:
    if agg in ("first", "last"):
        return _first_last(storage, agg, field, "ts")
    return f"{agg}({field})"


def _combined_agg(storage: Storage, field: str, agg: str) -> str:
    """An aggregate over rollup rows that equals the same aggregate over their readings."""
    if agg == "avg":
        weight = "temperature_readings" if field == "temperature" else "readings"
        return f"sum({field}_avg * {weight}) / nullif(sum({weight}), 0)"
    if agg in ("first", "last"):
        return _first_last(storage, agg, f"{field}_{agg}", "bucket")
    return f"{agg}({field}_{agg})"


def raw_columns(storage: Storage, pairs: Sequence[tuple[str, str]], *, energy: bool = False) -> str:
    """Select list of the rollup columns named by (field, agg) pairs, computed from raw readings."""
    cols = ["count(*) AS readings", *(f"{_raw_agg(storage, f, a)} AS {f}_{a}" for f, a in pairs)]
    if any(f == "temperature" and a == "avg" for f, a in pairs):
        cols.append("count(temperature) AS temperature_readings")
    if energy:
        cols.append(f"{_ENERGY.format(sign='-')} AS energy_charged_wh")
        cols.append(f"{_ENERGY.format(sign='')} AS energy_discharged_wh")
    return ", ".join(cols)


def combined_columns(storage: Storage, pairs: Sequence[tuple[str, str]], *, energy: bool = False) -> str:
    """The same columns combined from finer rollup rows."""
    cols = ["sum(readings)::bigint AS readings"]
    cols += [f"{_combined_agg(storage, f, a)} AS {f}_{a}" for f, a in pairs]
    if any(f == "temperature" and a == "avg" for f, a in pairs):
        cols.append("sum(temperature_readings)::bigint AS temperature_readings")
    if energy:
        cols += [
            "sum(energy_charged_wh) AS energy_charged_wh",
            "sum(energy_discharged_wh) AS energy_discharged_wh",
        ]
    return ", ".join(cols)


ALL_PAIRS = [(f, a) for f in FIELDS for a in AGGS]
ROLLUP_COLUMNS = (
    "readings, "
    + ", ".join(f"{f}_{a}" for f, a in ALL_PAIRS)
    + ", temperature_readings, energy_charged_wh, energy_discharged_wh, first_ts, last_ts"
)


def full_raw_columns(storage: Storage) -> str:
    """Every rollup column computed from raw readings (what the plain refresh stores)."""
    return raw_columns(storage, ALL_PAIRS, energy=True) + ", min(ts) AS first_ts, max(ts) AS last_ts"


def full_combined_columns(storage: Storage) -> str:
    return (
        combined_columns(storage, ALL_PAIRS, energy=True)
        + ", min(first_ts) AS first_ts, max(last_ts) AS last_ts"
    )


FLEET_WORK_MEM = "64MB"
_LEVEL_TABLE = {"hourly": "telemetry_hourly", "daily": "telemetry_daily"}
_LEVEL_STEP = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}


def _level_sql(
    storage: Storage,
    source: Source,
    interval: timedelta,
    pairs: Sequence[tuple[str, str]],
    where: str,
    *,
    energy: bool,
    per_battery: bool,
) -> str:
    """Buckets of `interval` from `source`; `where` filters the source's rows (ts or bucket)."""
    group = "battery_id, " if per_battery else ""
    if source == "raw":
        return (
            f"SELECT {group}{bucket_expr(storage)} AS bucket, {raw_columns(storage, pairs, energy=energy)} "  # noqa: S608
            f"FROM telemetry WHERE {where.format(t='ts')} GROUP BY {group}bucket"
        )
    table = _LEVEL_TABLE[source]
    if interval == _LEVEL_STEP[source]:
        cols = ["readings", *(f"{f}_{a}" for f, a in pairs)]
        if any(f == "temperature" and a == "avg" for f, a in pairs):
            cols.append("temperature_readings")
        if energy:
            cols += ["energy_charged_wh", "energy_discharged_wh"]
        return f"SELECT {group}bucket, {', '.join(cols)} FROM {table} WHERE {where.format(t='bucket')}"  # noqa: S608
    return (
        f"SELECT {group}{bucket_expr(storage, 'bucket')} AS bucket, "  # noqa: S608
        f"{combined_columns(storage, pairs, energy=energy)} "
        f"FROM {table} WHERE {where.format(t='bucket')} GROUP BY {group}{bucket_expr(storage, 'bucket')}"
    )


async def battery_buckets(
    conn: AsyncConnection,
    storage: Storage,
    *,
    battery_id: int,
    source: Source,
    interval: timedelta,
    start: datetime,
    end: datetime,
    pairs: Sequence[tuple[str, str]],
) -> list[dict[str, Any]]:
    """One battery's buckets in [start, end) (whole buckets), oldest first."""
    where = "battery_id = %(battery)s AND {t} >= %(start)s AND {t} < %(end)s"
    sql = _level_sql(storage, source, interval, pairs, where, energy=False, per_battery=False)
    cur = await conn.execute(
        f"{sql} ORDER BY bucket",
        {"battery": battery_id, "start": start, "end": end, "interval": interval, "origin": ORIGIN},
    )
    return await cur.fetchall()


RAW_COLUMNS = "ts, voltage, current, soc, temperature"
# Readings are float4: through their text form (the shortest that reads back the same) they leave
# as the numbers the device sent (48.3, not 48.29999923706055), cheaper here than in Python.
_RAW_SELECT = "ts, voltage::text::float8, current::text::float8, soc::text::float8, temperature::text::float8"


async def battery_readings(
    conn: AsyncConnection, *, battery_id: int, start: datetime, end: datetime, limit: int
) -> list[tuple[Any, ...]]:
    """A page of one battery's readings in [start, end) as RAW_COLUMNS tuples, oldest first."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(
        f"""SELECT {_RAW_SELECT} FROM telemetry
            WHERE battery_id = %s AND ts >= %s AND ts < %s ORDER BY ts LIMIT %s""",  # noqa: S608
        (battery_id, start, end, limit),
    )
    return await cur.fetchall()


def _scope(dealer_id: int | None, owner_id: int | None) -> str:
    if dealer_id is not None:
        return " AND battery_id IN (SELECT id FROM batteries WHERE dealer_id = %(dealer)s)"
    if owner_id is not None:
        return " AND battery_id IN (SELECT id FROM batteries WHERE owner_id = %(owner)s)"
    return ""


async def fleet_buckets(
    conn: AsyncConnection,
    storage: Storage,
    *,
    source: Source,
    interval: timedelta,
    start: datetime,
    end: datetime,
    dealer_id: int | None,
    owner_id: int | None,
) -> list[dict[str, Any]]:
    """Per bucket: batteries reporting, readings, SOC mean and spread across batteries, energy."""
    where = "{t} >= %(start)s AND {t} < %(end)s" + _scope(dealer_id, owner_id)
    pairs = [("soc", "avg")]
    if source == "raw" and interval % timedelta(hours=1) == timedelta(0):
        # Energy is defined per battery-hour: computed from raw readings, hours come first.
        hourly = _level_sql(
            storage, "raw", timedelta(hours=1), pairs, where, energy=True, per_battery=True
        ).replace("%(interval)s", "%(hour)s")
        inner = (
            f"SELECT battery_id, {bucket_expr(storage, 'bucket')} AS bucket, "  # noqa: S608
            f"{combined_columns(storage, pairs, energy=True)} FROM ({hourly}) h "
            f"GROUP BY battery_id, {bucket_expr(storage, 'bucket')}"
        )
    else:
        inner = _level_sql(storage, source, interval, pairs, where, energy=True, per_battery=True)
    sql = f"""SELECT bucket, count(*) AS batteries_reporting, sum(readings)::bigint AS readings,
                   sum(soc_avg * readings) / sum(readings) AS soc_mean,
                   percentile_cont(ARRAY[0.1, 0.5, 0.9]) WITHIN GROUP (ORDER BY soc_avg) AS soc_p,
                   sum(energy_charged_wh) AS energy_charged_wh,
                   sum(energy_discharged_wh) AS energy_discharged_wh
            FROM ({inner}) per_battery GROUP BY bucket ORDER BY bucket"""  # noqa: S608
    params = {
        "start": start,
        "end": end,
        "interval": interval,
        "hour": timedelta(hours=1),
        "origin": ORIGIN,
        "dealer": dealer_id,
        "owner": owner_id,
    }
    async with conn.transaction():
        # A week of a thousand batteries' hours is 168,000 rows sorted by bucket: in memory. The
        # newest hour, computed from raw readings, is a few thousand rows per hundred batteries:
        # parallel workers cost more to start than they save (64 against 96 ms, 300 batteries).
        await conn.execute(f"SET LOCAL work_mem = '{FLEET_WORK_MEM}'")
        await conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cur = await conn.execute(sql, params)
        return await cur.fetchall()


# The switches as confirmed and as asked, and whether they agree: kept on the row (migration 0037).
SWITCHES = (
    "b.reported_charging AS charging, b.reported_discharging AS discharging, b.desired_charging, "
    "b.desired_discharging, b.in_sync"
)


async def latest(
    conn: AsyncConnection,
    *,
    dealer_id: int | None,
    owner_id: int | None,
    online: bool | None,
    soc_below: float | None,
    stale: timedelta | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Each live battery of the scope with its newest reading (from battery_latest), by serial."""
    cur = await conn.execute(
        f"""SELECT b.serial_number, b.status, b.online, {SWITCHES},
                  b.last_seen_at, l.ts, l.voltage, l.current, l.soc, l.temperature, l.lat, l.lon,
                  extract(epoch FROM statement_timestamp() - l.ts)::float8 AS age_seconds
           FROM batteries b LEFT JOIN battery_latest l ON l.battery_id = b.id
           WHERE b.deleted_at IS NULL
             AND (%(dealer)s::bigint IS NULL OR b.dealer_id = %(dealer)s)
             AND (%(owner)s::bigint IS NULL OR b.owner_id = %(owner)s)
             AND (%(online)s::boolean IS NULL OR b.online = %(online)s)
             AND (%(soc_below)s::float8 IS NULL OR l.soc < %(soc_below)s)
             AND (%(stale)s::interval IS NULL OR l.ts IS NULL OR l.ts < statement_timestamp() - %(stale)s)
           ORDER BY b.serial_number LIMIT %(limit)s OFFSET %(offset)s""",  # noqa: S608
        {
            "dealer": dealer_id,
            "owner": owner_id,
            "online": online,
            "soc_below": soc_below,
            "stale": stale,
            "limit": limit,
            "offset": offset,
        },
    )
    return await cur.fetchall()


async def positions(
    conn: AsyncConnection,
    *,
    dealer_id: int | None,
    owner_id: int | None,
    bbox: tuple[float, float, float, float] | None,
) -> list[dict[str, Any]]:
    """Live batteries of the scope that have a position, with their newest reading's."""
    west, south, east, north = bbox if bbox is not None else (None, None, None, None)
    cur = await conn.execute(
        f"""SELECT b.serial_number, b.status, b.online, {SWITCHES},
                  l.ts, l.soc, l.lat, l.lon
           FROM battery_latest l JOIN batteries b ON b.id = l.battery_id
           WHERE b.deleted_at IS NULL AND l.lat IS NOT NULL AND l.lon IS NOT NULL
             AND (%(dealer)s::bigint IS NULL OR b.dealer_id = %(dealer)s)
             AND (%(owner)s::bigint IS NULL OR b.owner_id = %(owner)s)
             AND (%(south)s::float8 IS NULL OR l.lat BETWEEN %(south)s AND %(north)s)
             AND (%(west)s::float8 IS NULL
                  OR (%(west)s <= %(east)s AND l.lon BETWEEN %(west)s AND %(east)s)
                  -- a box across the antimeridian: west > east
                  OR (%(west)s > %(east)s AND (l.lon >= %(west)s OR l.lon <= %(east)s)))
           ORDER BY b.serial_number""",  # noqa: S608
        {"dealer": dealer_id, "owner": owner_id, "west": west, "south": south, "east": east, "north": north},
    )
    return await cur.fetchall()


async def storage_of(conn: AsyncConnection) -> Storage:
    cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    return "timescale" if await cur.fetchone() is not None else "plain"
