"""SQL of the health job: its state per battery, the daily history, the health score. Functions take
`conn` first and never commit."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection


async def due(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Live batteries with readings newer than the job has seen, with their nameplate and state."""
    cur = await conn.execute(
        """SELECT b.id, b.dealer_id, b.cell_chemistry, b.nominal_voltage, b.nominal_capacity, l.ts AS latest,
                  s.battery_id IS NOT NULL AS known, s.processed_until, s.resume_from, s.charge_ah,
                  s.swing_pct, s.parked_lost_pct, s.parked_s, s.below_threshold, s.anomalies
           FROM battery_latest l
           JOIN batteries b ON b.id = l.battery_id AND b.deleted_at IS NULL
           LEFT JOIN battery_health_state s ON s.battery_id = l.battery_id
           WHERE s.battery_id IS NULL OR l.ts > s.processed_until
           ORDER BY b.id"""
    )
    return await cur.fetchall()


async def recent_history(
    conn: AsyncConnection, battery_ids: list[int], *, days: int
) -> dict[int, list[tuple]]:
    """(day, health) of each battery's last `days` days, oldest first."""
    cur = await conn.execute(
        """SELECT battery_id, day, health::float8 AS health FROM battery_health_history
           WHERE battery_id = ANY(%s) AND day > current_date - %s ORDER BY battery_id, day""",
        (battery_ids, days),
    )
    found: dict[int, list[tuple]] = {}
    for row in await cur.fetchall():
        found.setdefault(row["battery_id"], []).append((row["day"], row["health"]))
    return found


async def save_states(conn: AsyncConnection, states: list[dict[str, Any]]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO battery_health_state AS s (battery_id, processed_until, resume_from, charge_ah,
                   swing_pct, parked_lost_pct, parked_s, health, resistance_mohm, trend_per_day,
                   days_to_service, below_threshold, anomalies, anomaly_details, updated_at)
               VALUES (%(battery_id)s, %(processed_until)s, %(resume_from)s, %(charge_ah)s, %(swing_pct)s,
                   %(parked_lost_pct)s, %(parked_s)s, %(health)s, %(resistance_mohm)s, %(trend_per_day)s,
                   %(days_to_service)s, %(below_threshold)s, %(anomalies)s, %(anomaly_details)s, now())
               ON CONFLICT (battery_id) DO UPDATE SET
                   processed_until = EXCLUDED.processed_until, resume_from = EXCLUDED.resume_from,
                   charge_ah = EXCLUDED.charge_ah, swing_pct = EXCLUDED.swing_pct,
                   parked_lost_pct = EXCLUDED.parked_lost_pct, parked_s = EXCLUDED.parked_s,
                   health = coalesce(EXCLUDED.health, s.health),
                   resistance_mohm = coalesce(EXCLUDED.resistance_mohm, s.resistance_mohm),
                   trend_per_day = coalesce(EXCLUDED.trend_per_day, s.trend_per_day),
                   days_to_service = CASE WHEN EXCLUDED.trend_per_day IS NULL THEN s.days_to_service
                                          ELSE EXCLUDED.days_to_service END,
                   below_threshold = EXCLUDED.below_threshold, anomalies = EXCLUDED.anomalies,
                   anomaly_details = EXCLUDED.anomaly_details, updated_at = now()""",
            states,
        )


async def save_history(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """The day's estimate of each battery (the last of the day wins; anomalies add up)."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO battery_health_history AS h (battery_id, day, dealer_key, health, capacity_ah,
                                                        resistance_mohm, anomalies)
               VALUES (%(battery_id)s, %(day)s, %(dealer_key)s, %(health)s, %(capacity_ah)s,
                       %(resistance_mohm)s, %(anomalies)s)
               ON CONFLICT (battery_id, day) DO UPDATE SET
                   dealer_key = EXCLUDED.dealer_key, health = EXCLUDED.health,
                   capacity_ah = EXCLUDED.capacity_ah,
                   resistance_mohm = coalesce(EXCLUDED.resistance_mohm, h.resistance_mohm),
                   anomalies = ARRAY(SELECT DISTINCT unnest(h.anomalies || EXCLUDED.anomalies) ORDER BY 1)""",
            rows,
        )


async def set_health_scores(conn: AsyncConnection, scores: dict[int, float]) -> None:
    """The batteries' health_score, where it changed (each change rebuilds the pack's API object)."""
    await conn.execute(
        """UPDATE batteries b SET health_score = v.score
           FROM unnest(%s::bigint[], %s::numeric[]) AS v (id, score)
           WHERE b.id = v.id AND b.health_score IS DISTINCT FROM v.score""",
        (list(scores), [round(s, 1) for s in scores.values()]),
    )


async def try_lock(conn: AsyncConnection, key: int) -> bool:
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (key,))
    row = await cur.fetchone()
    return bool(row and row["locked"])


async def unlock(conn: AsyncConnection, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
