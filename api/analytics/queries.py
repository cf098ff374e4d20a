"""SQL aggregates of the analytics endpoints. Functions take `conn` first and never commit.

Each reads one scope: a dealer's rows (`dealer`), a consumer's batteries (`owner`), a technician's
tickets (`technician`), or everything (all None). Periods are [from, to] dates, in UTC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import AsyncConnection

from api.service.queries import read_snapshot

Row = dict[str, Any]


@dataclass(frozen=True)
class Scope:
    dealer_id: int | None = None
    owner_id: int | None = None
    technician_id: int | None = None

    def params(self) -> dict[str, Any]:
        return {"dealer": self.dealer_id, "owner": self.owner_id, "tech": self.technician_id}


BATTERY_SCOPE = """b.deleted_at IS NULL
    AND (%(dealer)s::bigint IS NULL OR b.dealer_id = %(dealer)s)
    AND (%(owner)s::bigint IS NULL OR b.owner_id = %(owner)s)"""
TICKET_SCOPE = """(%(dealer)s::bigint IS NULL OR t.dealer_id = %(dealer)s)
    AND (%(tech)s::bigint IS NULL OR t.assigned_to = %(tech)s)
    AND (%(from)s::date IS NULL OR t.created_at >= %(from)s::date)
    AND (%(to)s::date IS NULL OR t.created_at < %(to)s::date + 1)"""


@asynccontextmanager
async def snapshot(conn: AsyncConnection) -> AsyncIterator[None]:
    """One consistent read-only snapshot for a report's queries, each planned for its parameters
    (api/service/queries.read_snapshot), and without JIT compilation.

    Both measured (bench/analytics.py): psycopg prepares a statement run five times on a connection,
    and the generic plan of a prepared scope filter took the daily collections from 60 ms to 3-5 s
    at the tenth run; JIT compiled each of these aggregates (their estimated cost passes
    jit_above_cost) for ~30 ms, more than running them.
    """
    async with conn.transaction():
        await read_snapshot(conn)
        await conn.execute("SET LOCAL jit = off")
        yield


def _period(start: date | None, end: date | None) -> dict[str, Any]:
    return {"from": start, "to": end}


# --- battery health -------------------------------------------------------------------------------

BANDS = (("excellent", 90, None), ("good", 75, 90), ("fair", 60, 75), ("poor", None, 60))


async def health_bands(conn: AsyncConnection, scope: Scope) -> tuple[int, dict[str, Row]]:
    """(batteries in scope, per band: count and mean health)."""
    parts = []
    for name, low, high in BANDS:
        cond = " AND ".join(
            [
                *([f"b.health_score >= {low}"] if low is not None else []),
                *([f"b.health_score < {high}"] if high else []),
            ]
        )
        parts.append(f"count(*) FILTER (WHERE {cond}) AS {name}_count")
        parts.append(f"round(avg(b.health_score) FILTER (WHERE {cond}), 1)::float8 AS {name}_avg")
    cur = await conn.execute(
        f"SELECT count(*) AS total, {', '.join(parts)} FROM batteries b WHERE {BATTERY_SCOPE}",  # noqa: S608
        scope.params(),
    )
    row = await cur.fetchone()
    assert row is not None
    return row["total"], {n: {"count": row[f"{n}_count"], "avg": row[f"{n}_avg"]} for n, _, _ in BANDS}


async def predictive(conn: AsyncConnection, scope: Scope, *, threshold: float, horizon_days: int) -> Row:
    """Batteries needing service now (below the threshold, or an anomaly in their latest readings), and
    those that the health trend brings below it within the horizon."""
    cur = await conn.execute(
        f"""WITH judged AS (
                SELECT b.health_score < %(threshold)s OR coalesce(cardinality(s.anomalies), 0) > 0 AS needs,
                       s.days_to_service - extract(epoch FROM now() - s.updated_at) / 86400 AS days_left
                FROM batteries b LEFT JOIN battery_health_state s ON s.battery_id = b.id
                WHERE {BATTERY_SCOPE})
            SELECT count(*) FILTER (WHERE needs) AS needing,
                   count(*) FILTER (WHERE NOT needs AND days_left <= %(horizon)s) AS at_risk
            FROM judged""",  # noqa: S608 - constant fragments
        {**scope.params(), "threshold": threshold, "horizon": horizon_days},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def monthly_health(conn: AsyncConnection, scope: Scope, start: date, end: date) -> dict[date, float]:
    """Mean daily health per month, from the monthly read model (battery_health_monthly)."""
    cur = await conn.execute(
        """SELECT month, (sum(health_sum) / nullif(sum(days), 0))::float8 AS avg_health
           FROM battery_health_monthly
           WHERE (%(dealer)s::bigint IS NULL OR dealer_key = %(dealer)s)
             AND month >= date_trunc('month', %(from)s::date) AND month <= %(to)s::date AND days > 0
           GROUP BY month""",
        {**scope.params(), **_period(start, end)},
    )
    return {r["month"]: r["avg_health"] for r in await cur.fetchall()}


async def monthly_tickets(conn: AsyncConnection, scope: Scope, start: date, end: date) -> dict[date, int]:
    cur = await conn.execute(
        f"""SELECT date_trunc('month', t.created_at)::date AS month, count(*) AS tickets
            FROM service_tickets t WHERE {TICKET_SCOPE} GROUP BY 1""",  # noqa: S608 - constant fragment
        {**scope.params(), **_period(start, end)},
    )
    return {r["month"]: r["tickets"] for r in await cur.fetchall()}


# --- dealer dashboard -----------------------------------------------------------------------------


async def consumer_counts(conn: AsyncConnection, scope: Scope) -> Row:
    cur = await conn.execute(
        """SELECT count(*) AS total, count(*) FILTER (WHERE kyc_status = 'verified') AS verified,
                  count(*) FILTER (WHERE kyc_status = 'pending') AS pending
           FROM consumers c WHERE (%(dealer)s::bigint IS NULL OR c.dealer_id = %(dealer)s)""",
        scope.params(),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def battery_counts(conn: AsyncConnection, scope: Scope) -> Row:
    cur = await conn.execute(
        f"""SELECT count(*) AS total, count(*) FILTER (WHERE b.status = 'active') AS active,
                   count(*) FILTER (WHERE b.status = 'maintenance') AS maintenance,
                   round(avg(b.health_score), 1)::float8 AS avg_health
            FROM batteries b WHERE {BATTERY_SCOPE}""",  # noqa: S608 - constant fragment
        scope.params(),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


# --- service --------------------------------------------------------------------------------------


async def ticket_totals(conn: AsyncConnection, scope: Scope, start: date | None, end: date | None) -> Row:
    cur = await conn.execute(
        f"""SELECT count(*) AS total,
                   count(*) FILTER (WHERE t.status = 'open') AS open,
                   count(*) FILTER (WHERE t.status = 'assigned') AS assigned,
                   count(*) FILTER (WHERE t.status = 'in_progress') AS in_progress,
                   count(*) FILTER (WHERE t.status IN ('resolved', 'closed')) AS resolved,
                   count(t.resolved_at) AS resolved_n,
                   count(*) FILTER (WHERE t.resolved_at <= t.sla_due_at) AS within_sla,
                   avg(extract(epoch FROM t.resolved_at - t.created_at))::float8 AS avg_s,
                   min(extract(epoch FROM t.resolved_at - t.created_at))::float8 AS min_s,
                   max(extract(epoch FROM t.resolved_at - t.created_at))::float8 AS max_s
            FROM service_tickets t WHERE {TICKET_SCOPE}""",  # noqa: S608 - constant fragment
        {**scope.params(), **_period(start, end)},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def technician_performance(
    conn: AsyncConnection, scope: Scope, start: date | None, end: date | None
) -> list[Row]:
    cur = await conn.execute(
        f"""SELECT t.assigned_to AS technician_id, u.name, count(*) AS tickets_resolved,
                   avg(extract(epoch FROM t.resolved_at - t.created_at))::float8 AS avg_s,
                   round(avg(t.customer_rating), 1)::float8 AS customer_satisfaction
            FROM service_tickets t JOIN users u ON u.id = t.assigned_to
            WHERE t.resolved_at IS NOT NULL AND {TICKET_SCOPE}
            GROUP BY t.assigned_to, u.name ORDER BY tickets_resolved DESC, t.assigned_to""",  # noqa: S608
        {**scope.params(), **_period(start, end)},
    )
    return await cur.fetchall()


async def issue_categories(
    conn: AsyncConnection, scope: Scope, start: date | None, end: date | None
) -> dict[str, int]:
    cur = await conn.execute(
        f"""SELECT t.issue_category, count(*) AS tickets FROM service_tickets t
            WHERE {TICKET_SCOPE} GROUP BY 1""",  # noqa: S608 - constant fragment
        {**scope.params(), **_period(start, end)},
    )
    return {r["issue_category"]: r["tickets"] for r in await cur.fetchall()}
