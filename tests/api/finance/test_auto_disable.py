"""The overdue auto-disable: warning first, charging cut (or full, at rest only), never twice (also
from two connections at once), an operator's disable respected, enabled again by the payment that
clears the overdue; the overdue list and the collection report."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.finance import overdue
from api.finance.access import Scope
from control.commands import issue_command
from packfleet.settings import Settings
from tests.api.conftest import World, bearer
from tests.api.finance.conftest import age_warnings, loan, pay, today
from tests.conftest import make_settings


def _run(url: str, settings: Settings, dealer_id: int, **kw: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return await overdue.run(
                conn,
                settings=settings,
                scope=Scope(dealer_id=dealer_id),
                threshold_days=7,
                actor="test",
                **kw,
            )

    return asyncio.run(go())


def _commands(db: psycopg.Connection, battery_id: int) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT action, spec, reason, source, status FROM commands WHERE battery_id = %s ORDER BY seq",
        (battery_id,),
    ).fetchall()


def _sms(db: psycopg.Connection, phone: str) -> list[str]:
    return [
        r["kind"] for r in db.execute("SELECT kind FROM sms_outbox WHERE to_phone = %s ORDER BY id", (phone,))
    ]


def _warned(url: str, settings: Settings, world: World) -> None:
    """A run that warns (and disables nothing), then three days pass: the warned disables are due."""
    assert _run(url, settings, world.dealer_a["id"])["disabled_count"] == 0
    age_warnings(world.conn)


@pytest.fixture
def overdue_loan(client: TestClient, world: World) -> dict[str, Any]:
    """A loan of dealer A whose first EMI is 10 days overdue (beyond the threshold of 7)."""
    return loan(client, world, months_ago=1, days_ago=10, amount=12000, tenure=12, rate=0)


def test_warned_first_then_charging_disabled_once(
    client: TestClient, world: World, database_url: str, overdue_loan: dict[str, Any]
) -> None:
    settings = make_settings(database_url)
    battery, phone = overdue_loan["battery"], world.consumer_a["phone"]
    first = _run(database_url, settings, world.dealer_a["id"])
    assert first["disabled_count"] == 0 and first["warned_count"] == 1
    assert first["deferred"] == [
        {
            "battery_serial": battery["serial_number"],
            "loan_id": overdue_loan["id"],
            "reason": "awaiting_warning_grace",
        }
    ]
    assert _commands(world.conn, battery["id"]) == []
    assert _run(database_url, settings, world.dealer_a["id"])["warned_count"] == 0  # one warning per EMI
    age_warnings(world.conn, overdue_loan["id"])
    second = _run(database_url, settings, world.dealer_a["id"])
    assert second["disabled_batteries"] == [battery["serial_number"]] and len(second["command_ids"]) == 1
    assert second["disabled"][0]["spec"] == "charging" and second["disabled"][0]["overdue_days"] == 10
    assert _commands(world.conn, battery["id"]) == [
        {
            "action": "disable",
            "spec": "charging",
            "reason": "emi_overdue",
            "source": "finance",
            "status": "queued",
        }
    ]
    state = world.conn.execute(
        "SELECT desired_enabled, desired_spec FROM batteries WHERE id = %s", (battery["id"],)
    )
    assert state.fetchone() == {"desired_enabled": False, "desired_spec": "charging"}
    bulk = client.get(f"/api/commands/bulk/{second['bulk_ids'][0]}", headers=bearer(world.admin)).json()
    assert bulk["total"] == 1 and bulk["reason"] == "emi_overdue"
    third = _run(database_url, settings, world.dealer_a["id"])
    assert third["disabled_count"] == 0 and len(_commands(world.conn, battery["id"])) == 1
    assert _sms(world.conn, phone)[-2:] == ["overdue_warning", "battery_disabled"]
    trail = client.get(f"/api/finance/loans/{overdue_loan['id']}/audit", headers=bearer(world.admin)).json()
    disabled = next(e for e in trail if e["action"] == "battery_disabled")
    assert disabled["command_id"] == second["command_ids"][0]
    assert disabled["instalment_id"] == overdue_loan["instalments"][0]["id"]
    assert disabled["detail"]["reason"] == "emi_overdue"
    assert "overdue_warning_sent" in [e["action"] for e in trail]


def test_two_runs_at_once_issue_one_command(
    client: TestClient, world: World, database_url: str, overdue_loan: dict[str, Any]
) -> None:
    settings = make_settings(database_url, finance_disable_grace_hours=0)
    others = [loan(client, world, months_ago=2, amount=1200, tenure=12, rate=0) for _ in range(3)]
    _warned(database_url, settings, world)

    async def race() -> list[dict[str, Any]]:
        async def one() -> dict[str, Any]:
            async with await psycopg.AsyncConnection.connect(
                database_url, autocommit=True, row_factory=dict_row
            ) as conn:
                return await overdue.run(
                    conn,
                    settings=settings,
                    scope=Scope(dealer_id=world.dealer_a["id"]),
                    threshold_days=7,
                    actor="test",
                )

        return list(await asyncio.gather(one(), one()))

    results = asyncio.run(race())
    assert sorted(r["disabled_count"] for r in results) == [0, 4]
    for made in [overdue_loan, *others]:
        assert len(_commands(world.conn, made["battery"]["id"])) == 1
        kinds = _sms(world.conn, world.consumer_a["phone"])
    assert kinds.count("battery_disabled") >= 4 and kinds.count("overdue_warning") >= 4
    counted = world.conn.execute(
        "SELECT count(*) AS n FROM overdue_disables WHERE loan_id = ANY(%s)",
        ([m["id"] for m in [overdue_loan, *others]],),
    )
    assert counted.fetchone()["n"] == 4


def test_an_operators_disable_is_left_alone(
    client: TestClient, world: World, database_url: str, overdue_loan: dict[str, Any]
) -> None:
    settings = make_settings(database_url, finance_disable_grace_hours=0)
    battery = overdue_loan["battery"]

    async def operator() -> None:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as c:
            await issue_command(
                c,
                battery_id=battery["id"],
                action="disable",
                spec="both",
                reason="stolen",
                requested_by=world.admin["id"],
                source="api",
            )

    asyncio.run(operator())
    result = _run(database_url, settings, world.dealer_a["id"])
    assert result["disabled_count"] == 0
    assert result["deferred"][0]["reason"] == "disabled_by_operator"
    pay(client, world, overdue_loan["id"], 1000, f"R-{uuid.uuid4().hex[:8]}")
    assert [c["reason"] for c in _commands(world.conn, battery["id"])] == ["stolen"]


def test_the_payment_that_clears_the_overdue_enables_at_once(
    client: TestClient, world: World, database_url: str, overdue_loan: dict[str, Any]
) -> None:
    settings = make_settings(database_url, finance_disable_grace_hours=0)
    battery = overdue_loan["battery"]
    _warned(database_url, settings, world)
    assert _run(database_url, settings, world.dealer_a["id"])["disabled_count"] == 1
    partial = pay(client, world, overdue_loan["id"], 400, f"R-{uuid.uuid4().hex[:8]}").json()
    assert partial["enable_command_id"] is None and partial["loan"]["battery_disabled_for_overdue"]
    cleared = pay(client, world, overdue_loan["id"], 600, f"R-{uuid.uuid4().hex[:8]}").json()
    assert cleared["enable_command_id"] is not None and not cleared["loan"]["battery_disabled_for_overdue"]
    assert [(c["action"], c["reason"]) for c in _commands(world.conn, battery["id"])] == [
        ("disable", "emi_overdue"),
        ("enable", "emi_overdue_cleared"),
    ]
    assert _sms(world.conn, world.consumer_a["phone"])[-1] == "battery_enabled"
    actions = [
        e["action"]
        for e in client.get(
            f"/api/finance/loans/{overdue_loan['id']}/audit", headers=bearer(world.admin)
        ).json()
    ]
    assert actions[-3:] == ["payment_recorded", "payment_recorded", "battery_enabled"]


def test_an_operators_command_after_the_disable_holds(
    client: TestClient, world: World, database_url: str, overdue_loan: dict[str, Any]
) -> None:
    settings = make_settings(database_url, finance_disable_grace_hours=0)
    battery = overdue_loan["battery"]
    _warned(database_url, settings, world)
    assert _run(database_url, settings, world.dealer_a["id"])["disabled_count"] == 1
    answer = client.post(
        f"/api/batteries/{battery['serial_number']}/control",
        headers=bearer(world.admin),
        json={"action": "maintenance", "reason": "water damage"},
    )
    assert answer.status_code == 200, answer.text
    paid = pay(client, world, overdue_loan["id"], 1000, f"R-{uuid.uuid4().hex[:8]}").json()
    assert paid["enable_command_id"] is None
    assert [c["reason"] for c in _commands(world.conn, battery["id"])] == ["emi_overdue", "water damage"]
    record = world.conn.execute(
        "SELECT release_reason FROM overdue_disables WHERE loan_id = %s", (overdue_loan["id"],)
    ).fetchone()
    assert record["release_reason"] == "operator"


def _reading(db: psycopg.Connection, battery_id: int, current: float, age_s: float = 5) -> None:
    db.execute(
        """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc)
           VALUES (%s, now() - make_interval(secs => %s), 52, %s, 60)
           ON CONFLICT (battery_id) DO UPDATE SET ts = EXCLUDED.ts, current = EXCLUDED.current""",
        (battery_id, age_s, current),
    )


def test_full_mode_cuts_discharge_only_at_rest(client: TestClient, world: World, database_url: str) -> None:
    settings = make_settings(database_url, finance_disable_grace_hours=0, finance_disable_mode="full")
    resting = loan(client, world, months_ago=1, days_ago=9, amount=1200, tenure=12, rate=0)
    moving = loan(client, world, months_ago=1, days_ago=9, amount=1200, tenure=12, rate=0)
    stale = loan(client, world, months_ago=1, days_ago=9, amount=1200, tenure=12, rate=0)
    _reading(world.conn, resting["battery"]["id"], current=0.3)
    _reading(world.conn, moving["battery"]["id"], current=-25.0)
    _reading(world.conn, stale["battery"]["id"], current=0.0, age_s=3600)
    _warned(database_url, settings, world)
    result = _run(database_url, settings, world.dealer_a["id"])
    specs = {d["loan_id"]: d["spec"] for d in result["disabled"]}
    assert specs == {resting["id"]: "both", moving["id"]: "charging", stale["id"]: "charging"}
    assert {d["loan_id"] for d in result["deferred"] if d["reason"] == "moving"} == {
        moving["id"],
        stale["id"],
    }
    _reading(world.conn, moving["battery"]["id"], current=0.1)
    _run(database_url, settings, world.dealer_a["id"])
    assert [c["spec"] for c in _commands(world.conn, moving["battery"]["id"])] == ["charging", "both"]
    assert [c["spec"] for c in _commands(world.conn, stale["battery"]["id"])] == ["charging"]
    assert [c["spec"] for c in _commands(world.conn, resting["battery"]["id"])] == ["both"]


def test_api_auto_disable_and_overdue_list(
    client: TestClient, world: World, overdue_loan: dict[str, Any]
) -> None:
    listed = client.get("/api/finance/overdue", headers=bearer(world.dealer_a_user)).json()
    row = next(a for a in listed["overdue_accounts"] if a["loan_id"] == overdue_loan["id"])
    assert row["overdue_days"] == 10 and row["amount"] == "1000.00" and row["loan_amount"] == 12000
    assert row["battery_serial"] == overdue_loan["battery"]["serial_number"]
    assert row["consumer_phone"] == world.consumer_a["phone"]
    assert listed["total_overdue_amount"] >= 1000
    beyond = client.get("/api/finance/overdue?offset=1000", headers=bearer(world.dealer_a_user)).json()
    assert beyond["overdue_accounts"] == [] and beyond["total_overdue"] == listed["total_overdue"]
    assert beyond["total_overdue_amount"] == listed["total_overdue_amount"]
    assert (
        client.get("/api/finance/overdue", headers=bearer(world.dealer_b_user)).json()["total_overdue"] == 0
    )
    warned = client.post(
        "/api/finance/auto-disable", headers=bearer(world.dealer_a_user), json={"overdue_days_threshold": 7}
    ).json()
    assert warned["warned_count"] >= 1 and warned["disabled_count"] == 0
    age_warnings(world.conn)
    done = client.post("/api/finance/auto-disable", headers=bearer(world.dealer_a_user), json={}).json()
    assert overdue_loan["battery"]["serial_number"] in done["disabled_batteries"]
    assert done["message"] == "Batteries disabled successfully"
    assert (
        client.post("/api/finance/auto-disable", headers=bearer(world.dealer_b_user)).json()["disabled_count"]
        == 0
    )
    for user in (world.consumer_a_user, world.technician, world.nbfc):
        assert client.post("/api/finance/auto-disable", headers=bearer(user)).status_code == 403


def test_collection_report_by_day(client: TestClient, world: World) -> None:
    made = loan(client, world, months_ago=3, amount=12000, tenure=12, rate=0)
    day = today()
    for amount, paid_on in ((1000, day), (500, day), (250, day - timedelta(days=1))):
        assert (
            pay(
                client, world, made["id"], amount, f"C-{uuid.uuid4().hex[:8]}", paid_on=str(paid_on)
            ).status_code
            == 201
        )
    world.conn.execute(
        "UPDATE loans SET created_at = created_at - interval '30 days' WHERE id = %s", (made["id"],)
    )
    url = f"/api/finance/collection-report?start_date={day - timedelta(days=1)}&end_date={day}"
    report = client.get(url, headers=bearer(world.dealer_a_user)).json()
    assert report["collection_report"] == [
        {
            "collection_date": str(day - timedelta(days=1)),
            "collections_count": 1,
            "total_collected": 250,
            "avg_collection": 250,
        },
        {"collection_date": str(day), "collections_count": 2, "total_collected": 1500, "avg_collection": 750},
    ]
    assert report["summary"] == {
        "total_collections": 3,
        "total_amount_collected": 1750,
        "avg_daily_collection": 875,
    }
    only_today = client.get(
        f"/api/finance/collection-report?start_date={day}", headers=bearer(world.dealer_a_user)
    )
    assert only_today.json()["summary"]["total_collections"] == 2
    other = client.get(url, headers=bearer(world.dealer_b_user)).json()
    assert other["summary"]["total_collections"] == 0
    bad = client.get(
        f"/api/finance/collection-report?start_date={day}&end_date={day - timedelta(days=1)}",
        headers=bearer(world.admin),
    )
    assert bad.status_code == 400
    assert Decimal(str(report["summary"]["total_amount_collected"])) == Decimal("1750")


def test_the_bulk_commands_overdue_filter(
    client: TestClient, world: World, overdue_loan: dict[str, Any]
) -> None:
    on_time = loan(client, world, months_ago=1, amount=1200, tenure=12, rate=0)  # an EMI due today
    answer = client.post(
        "/api/commands/bulk",
        headers=bearer(world.dealer_a_user),
        json={
            "action": "disable",
            "spec": "charging",
            "filter": {"overdue_days": 7},
            "reason": "collections",
        },
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["total"] == 1
    assert len(_commands(world.conn, overdue_loan["battery"]["id"])) == 1
    assert _commands(world.conn, on_time["battery"]["id"]) == []
