"""A small dealership whose analytics are worked out by hand in the tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests import factories


def month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


@dataclass
class Shop:
    dealer: dict[str, Any]
    user: dict[str, Any]
    batteries: dict[int, int]  # health score → battery id
    techs: dict[str, dict[str, Any]]
    m1: date  # two months ago
    m2: date  # last month


def _at(day: date, plus_days: float = 0.0) -> datetime:
    return datetime(day.year, day.month, day.day, 10, tzinfo=UTC) + timedelta(days=plus_days)


@pytest.fixture
def shop(db: psycopg.Connection) -> Shop:
    """Six batteries (health 95, 92, 80, 65, 50, 40), health history over two months, six tickets."""
    dealer = factories.dealer(db, "Numbers Motors")
    user = factories.user(db, "dealer", dealer_id=dealer["id"])
    consumer = factories.consumer(db, dealer["id"], "Counted")
    batteries = {}
    for score in (95, 92, 80, 65, 50, 40):
        row = factories.battery(db, dealer_id=dealer["id"], owner_id=consumer["id"])
        db.execute("UPDATE batteries SET health_score = %s WHERE id = %s", (score, row["id"]))
        batteries[score] = row["id"]
    # what the health job found: an anomaly on the 80 % pack, trends on the two best
    for score, days_left, anomalies in ((95, 400.0, []), (92, 30.0, []), (80, None, ["over_temperature"])):
        db.execute(
            """INSERT INTO battery_health_state (battery_id, processed_until, health, days_to_service,
                                                 anomalies) VALUES (%s, now(), %s, %s, %s)""",
            (batteries[score], score, days_left, anomalies),
        )
    today = datetime.now(UTC).date()
    m1, m2 = month_start(today, 2), month_start(today, 1)
    for battery, day, value in (
        (95, m1, 90),
        (92, m1 + timedelta(days=1), 80),
        (95, m2, 70),
        (92, m2, 75),
        (80, m2 + timedelta(days=3), 80),
    ):
        db.execute(
            """INSERT INTO battery_health_history (battery_id, day, dealer_key, health)
               VALUES (%s, %s, %s, %s)""",
            (batteries[battery], day, dealer["id"], value),
        )
    techs = {name: factories.user(db, "technician", name=name) for name in ("T One", "T Two")}
    t1, t2 = techs["T One"]["id"], techs["T Two"]["id"]
    # (category, status, technician, opened, days to resolve, rating)
    tickets = [
        ("performance", "resolved", t1, _at(m1, 1), 2.0, 5),
        ("charging", "resolved", t1, _at(m2, 1), 4.0, 3),
        ("charging", "closed", t2, _at(m2, 2), 1.0, None),
        ("electrical", "open", None, _at(m2, 3), None, None),
        ("mechanical", "assigned", t2, _at(m2, 4), None, None),
        ("other", "in_progress", t2, _at(m2, 5), None, None),
    ]
    for category, status, tech, opened, resolve_days, rating in tickets:
        db.execute(
            """INSERT INTO service_tickets (battery_id, dealer_id, consumer_id, issue_category, description,
                   status, assigned_to, created_at, sla_due_at, resolved_at, customer_rating)
               VALUES (%s, %s, %s, %s, 'x', %s, %s, %s, %s, %s, %s)""",
            (
                batteries[95],
                dealer["id"],
                consumer["id"],
                category,
                status,
                tech,
                opened,
                opened + timedelta(days=3),
                None if resolve_days is None else opened + timedelta(days=resolve_days),
                rating,
            ),
        )
    return Shop(dealer, user, batteries, techs, m1, m2)
