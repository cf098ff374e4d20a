"""Finance test helpers: loans made through the API, then moved into the past by their dates."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.finance import overdue
from api.finance.access import Scope
from api.finance.loans import business_today
from api.finance.schedule import add_months
from packfleet.settings import Settings
from tests import factories
from tests.api.conftest import World, bearer


def today() -> date:
    """The business's today (Asia/Kolkata by default), which decides due dates."""
    return business_today(Settings(_env_file=None))


def apply(
    client: TestClient,
    world: World,
    *,
    amount: float = 45000,
    tenure: int = 24,
    rate: float = 12.5,
    battery: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A pending application of dealer A's consumer for its battery (or the battery given)."""
    answer = client.post(
        "/api/finance/applications",
        headers=bearer(world.dealer_a_user),
        json={
            "consumer_id": world.consumer_a["id"],
            "battery_id": (battery or world.battery_a)["id"],
            "amount": amount,
            "tenure_months": tenure,
            "interest_rate": rate,
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def approve(client: TestClient, world: World, application_id: int, **terms: Any) -> dict[str, Any]:
    answer = client.put(
        f"/api/finance/applications/{application_id}/approve",
        headers=bearer(world.admin),
        json={"status": "approved", **terms},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def fresh_battery(world: World) -> dict[str, Any]:
    """Another battery of dealer A's consumer (a battery has one running loan)."""
    return factories.battery(world.conn, dealer_id=world.dealer_a["id"], owner_id=world.consumer_a["id"])


def loan(
    client: TestClient, world: World, *, months_ago: int = 0, days_ago: int = 0, **terms: Any
) -> dict[str, Any]:
    """An approved loan on a fresh battery whose first EMI fell due `months_ago - 1` months and
    `days_ago` days ago (so `months_ago` instalments are due, the last one `days_ago` days ago)."""
    battery = fresh_battery(world)
    application = approve(client, world, apply(client, world, battery=battery, **terms)["id"])
    loan_id = application["loan_id"]
    if months_ago:
        backdate(world.conn, loan_id, add_months(today(), 1 - months_ago) - timedelta(days=days_ago))
    answer = client.get(f"/api/finance/loans/{loan_id}", headers=bearer(world.admin))
    assert answer.status_code == 200, answer.text
    return {**answer.json(), "battery": battery}


def backdate(conn: psycopg.Connection, loan_id: int, first_due: date) -> None:
    """Move a loan's schedule (and its creation) so that its first EMI fell due on `first_due`."""
    start = add_months(first_due, -1)
    with conn.transaction():
        conn.execute(
            "UPDATE loans SET schedule_start = %s, created_at = %s WHERE id = %s", (start, start, loan_id)
        )
        for row in conn.execute("SELECT id, emi_number FROM loan_instalments WHERE loan_id = %s", (loan_id,)):
            conn.execute(
                "UPDATE loan_instalments SET due_date = %s WHERE id = %s",
                (add_months(first_due, row["emi_number"] - 1), row["id"]),
            )


def pay(client: TestClient, world: World, loan_id: int, amount: Any, reference: str, **extra: Any) -> Any:
    return client.post(
        f"/api/finance/loans/{loan_id}/payments",
        headers=bearer(world.dealer_a_user),
        json={"reference": reference, "amount": amount, **extra},
    )


def age_warnings(conn: psycopg.Connection, loan_id: int | None = None, *, days: int = 3) -> None:
    """Move the overdue warnings (of one loan, or all) `days` into the past: the warning SMS went out
    that many days ago, and the disable it announced is due that many days earlier."""
    conn.execute(
        """UPDATE overdue_warnings
           SET warned_at = warned_at - make_interval(days => %(days)s), disable_from = disable_from - %(days)s
           WHERE %(loan)s::bigint IS NULL OR loan_id = %(loan)s""",
        {"days": days, "loan": loan_id},
    )


def run_overdue(url: str, settings: Settings, world: World) -> dict[str, Any]:
    """One overdue run for dealer A, as the daily job does it (threshold 7 days)."""

    async def go() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return await overdue.run(
                conn,
                settings=settings,
                scope=Scope(dealer_id=world.dealer_a["id"]),
                threshold_days=7,
                actor="t",
            )

    return asyncio.run(go())
