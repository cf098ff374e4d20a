"""The battery-health job: new telemetry → health score, history, trend, anomalies, service tickets.

Incremental: only batteries whose latest reading is newer than the job's last look are read, each
from where its evidence stops (api/analytics/estimator.py explains the maths and the resume point).
A battery whose health falls below the service threshold, or that shows an anomaly it did not show
the run before, gets a service ticket with the reason; the ticket table's unique index keeps that to
one active ticket per battery and reason however many runs and processes there are. One run at a
time (an advisory lock; a second process skips), so two schedulers during a deploy do no harm.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.analytics import estimator, readings
from api.analytics import health_queries as queries
from api.service.service import open_health_ticket
from packfleet.settings import Settings

log = logging.getLogger(__name__)

LOCK_KEY = 0x6865_616C  # "heal"
BATTERIES_PER_READ = 64  # a week of one-minute readings of 64 batteries is ~37 MB of COPY data
TREND_DAYS = 90
PROGRESS_EVERY_S = 10.0
CATEGORIES = {  # the issue category of the ticket each finding opens
    "low_health": "performance",
    "self_discharge": "performance",
    "over_temperature": "electrical",
    "voltage_out_of_range": "electrical",
}


def _limits(settings: Settings) -> estimator.Limits:
    return estimator.Limits(
        max_temperature_c=settings.health_max_temperature_c,
        self_discharge_pct_per_day=settings.health_self_discharge_pct_per_day,
    )


async def run(pool: AsyncConnectionPool, settings: Settings) -> dict[str, Any]:
    """One pass over the batteries with new readings; what it did, for the log."""
    started = time.monotonic()
    async with pool.connection() as guard:
        async with guard.transaction():
            if not await queries.try_lock(guard, LOCK_KEY):
                return {"skipped": "another health job is running"}
        try:
            async with pool.connection() as conn:
                return await _run(conn, settings, started)
        finally:
            async with guard.transaction():
                await queries.unlock(guard, LOCK_KEY)


async def _run(conn: AsyncConnection, settings: Settings, started: float) -> dict[str, Any]:
    async with conn.transaction():
        due = await queries.due(conn)
    totals = {"batteries": 0, "readings": 0, "estimated": 0, "tickets": 0}
    reported = time.monotonic()
    for k in range(0, len(due), BATTERIES_PER_READ):
        done = await _process(conn, settings, due[k : k + BATTERIES_PER_READ])
        for key, value in done.items():
            totals[key] += value
        if time.monotonic() - reported >= PROGRESS_EVERY_S:
            reported = time.monotonic()
            log.info("health job progress", extra={"due": len(due), **totals})
    return {**totals, "seconds": round(time.monotonic() - started, 3)}


def _window(battery: dict[str, Any], settings: Settings) -> readings.Window:
    oldest = battery["latest"] - timedelta(days=settings.health_window_days)
    since = battery["resume_from"] or battery["processed_until"] or oldest
    return readings.Window(battery["id"], max(since, oldest), battery["latest"])


async def _process(conn: AsyncConnection, settings: Settings, batch: list[dict[str, Any]]) -> dict[str, int]:
    ids = [b["id"] for b in batch]
    async with conn.transaction():
        found = await readings.fetch(conn, [_window(b, settings) for b in batch])
        history = await queries.recent_history(conn, ids, days=TREND_DAYS)
    limits, threshold = _limits(settings), settings.health_service_threshold
    states, days, scores, findings = [], [], {}, []
    for battery in batch:
        rating = estimator.pack_rating(
            chemistry=battery["cell_chemistry"],
            nominal_voltage=battery["nominal_voltage"],
            nominal_capacity=battery["nominal_capacity"],
        )
        state, day, opened = _assess(battery, rating, found.get(battery["id"]), history, limits, threshold)
        states.append(state)
        if day is not None:
            days.append(day)
            scores[battery["id"]] = day["health"]
        findings += [(battery["id"], *f) for f in opened]
    tickets = 0
    async with conn.transaction():
        await queries.save_states(conn, states)
        await queries.save_history(conn, days)
        await queries.set_health_scores(conn, scores)
        for battery_id, kind, reason in findings:
            ticket = await open_health_ticket(
                conn,
                settings=settings,
                battery_id=battery_id,
                kind=kind,
                category=CATEGORIES[kind],
                reason=reason,
            )
            tickets += ticket is not None
    return {
        "batteries": len(batch),
        "readings": sum(len(r) for r in found.values()),
        "estimated": len(days),
        "tickets": tickets,
    }


def _assess(
    battery: dict[str, Any],
    rating: estimator.PackRating | None,
    found: estimator.Readings | None,
    history: dict[int, list[tuple]],
    limits: estimator.Limits,
    threshold: float,
) -> tuple[dict[str, Any], dict[str, Any] | None, list[tuple[str, str]]]:
    """(new state, today's history row or None, findings that open a ticket: (kind, reason))."""
    known = battery["known"]
    before = (
        estimator.Evidence(
            battery["charge_ah"], battery["swing_pct"], battery["parked_lost_pct"], battery["parked_s"]
        )
        if known
        else estimator.Evidence()
    )
    latest: datetime = battery["latest"]
    after = battery["processed_until"].timestamp() if known else None
    if found is None or len(found) == 0:
        run = estimator.Estimate(estimator.Evidence(), None, None, 0, ())
    else:
        run = estimator.estimate(found, rating, limits, after=after)
    elapsed = latest.timestamp() - after if after is not None else 0.0
    evidence = before.faded(elapsed) + run.evidence
    anomalies = list(run.anomalies)
    slow_leak = estimator.self_discharge(evidence, limits)
    if slow_leak is not None:
        anomalies.append(slow_leak)
    health = estimator.health(evidence, rating) if rating is not None else None
    below = bool(battery["below_threshold"]) if health is None else health < threshold
    opened = [(a.kind, a.detail) for a in anomalies if a.kind not in (battery["anomalies"] or [])]
    if below and not battery["below_threshold"] and health is not None:
        opened.insert(
            0,
            (
                "low_health",
                f"Battery health {health:.1f} % is below the service threshold of {threshold:g} %",
            ),
        )
    line = trend = None
    if health is not None:
        today = latest.astimezone(UTC).date()
        past = [(d, h) for d, h in history.get(battery["id"], []) if d != today] + [(today, health)]
        trend = estimator.trend(
            np.array([d.toordinal() for d, _ in past]), np.array([h for _, h in past]), threshold
        )
        line = {
            "battery_id": battery["id"],
            "day": today,
            "dealer_key": battery["dealer_id"] or 0,
            "health": round(health, 2),
            "capacity_ah": rating.capacity_ah * health / 100 if rating else None,
            "resistance_mohm": None if run.resistance_ohm is None else run.resistance_ohm * 1000,
            "anomalies": sorted(a.kind for a in anomalies),
        }
    resume = None if run.resume_t is None else datetime.fromtimestamp(run.resume_t, UTC)
    state = {
        "battery_id": battery["id"],
        "processed_until": latest,
        "resume_from": resume,
        "charge_ah": evidence.charge_ah,
        "swing_pct": evidence.swing_pct,
        "parked_lost_pct": evidence.parked_lost_pct,
        "parked_s": evidence.parked_s,
        "health": None if health is None else round(health, 2),
        "resistance_mohm": None if run.resistance_ohm is None else run.resistance_ohm * 1000,
        "trend_per_day": None if trend is None else trend.per_day,
        "days_to_service": None if trend is None else trend.days_to_threshold,
        "below_threshold": below,
        "anomalies": [a.kind for a in anomalies],
        "anomaly_details": [a.detail for a in anomalies],
    }
    return state, line, opened
