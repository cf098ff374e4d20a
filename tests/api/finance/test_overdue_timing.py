"""When the auto-disable warns and disables: beyond the threshold by the due date, and only
`finance_warning_days` after a warning sent by an earlier run (a late warning moves the disable on)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from tests.api.conftest import World
from tests.api.finance.conftest import age_warnings, loan, run_overdue, today
from tests.conftest import make_settings


def _warning(db: psycopg.Connection, loan_id: int) -> dict[str, Any] | None:
    return db.execute("SELECT disable_from FROM overdue_warnings WHERE loan_id = %s", (loan_id,)).fetchone()


def _disabled(result: dict[str, Any]) -> set[int]:
    return {d["loan_id"] for d in result["disabled"]}


def test_warned_the_days_before_and_disabled_beyond_the_threshold(
    client: TestClient, world: World, database_url: str
) -> None:
    settings = make_settings(database_url, finance_disable_grace_hours=0, finance_warning_days=3)
    day = today()
    made = {
        n: loan(client, world, months_ago=1, days_ago=n, amount=1200, tenure=12, rate=0) for n in (4, 5, 7, 8)
    }
    first = run_overdue(database_url, settings, world)
    assert _disabled(first) == set()  # never in the run that warns
    assert _warning(world.conn, made[4]["id"]) is None  # its disable is 4 days away: not yet warned
    for n in (5, 7, 8):  # warned; the disable announced for the day it is 8 days overdue, ≥ 3 days on
        expected = max(day - timedelta(days=n) + timedelta(days=8), day + timedelta(days=3))
        assert _warning(world.conn, made[n]["id"]) == {"disable_from": expected}
    age_warnings(world.conn, days=2)
    assert _disabled(run_overdue(database_url, settings, world)) == set()  # warned 2 days ago: too early
    age_warnings(world.conn, days=1)
    third = run_overdue(database_url, settings, world)
    # 8 days overdue (> 7) and warned 3 days ago: disabled; 7 days is not beyond the threshold.
    assert _disabled(third) == {made[8]["id"]}


def test_a_late_warning_moves_the_disable_on(client: TestClient, world: World, database_url: str) -> None:
    settings = make_settings(database_url, finance_disable_grace_hours=0, finance_warning_days=3)
    late = loan(client, world, months_ago=1, days_ago=20, amount=1200, tenure=12, rate=0)
    first = run_overdue(database_url, settings, world)
    assert first["warned_count"] == 1 and first["disabled_count"] == 0
    assert _warning(world.conn, late["id"]) == {"disable_from": today() + timedelta(days=3)}
    assert _disabled(run_overdue(database_url, settings, world)) == set()  # a second run the same day
    age_warnings(world.conn, days=2)
    assert _disabled(run_overdue(database_url, settings, world)) == set()
    age_warnings(world.conn, days=1)
    assert _disabled(run_overdue(database_url, settings, world)) == {late["id"]}
