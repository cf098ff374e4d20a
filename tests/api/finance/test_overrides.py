"""The overdue disable against operators' commands, switch by switch: what the loan answers says
whether the disable is in force; a payment enables only what finance cut, never a switch an operator
turned off (also when that operator's command expired or failed); a disable of ours that expired or
failed goes out again, once; one enable, only when nothing is overdue any more."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from control import commands as control
from packfleet.settings import Settings
from tests.api.conftest import World, bearer
from tests.api.finance.conftest import age_warnings, loan, pay, run_overdue
from tests.conftest import make_settings


def _operator(url: str, world: World, battery_id: int, *, action: str, spec: str, reason: str) -> Any:
    async def go() -> Any:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return await control.issue_command(
                conn,
                battery_id=battery_id,
                action=action,  # type: ignore[arg-type]
                spec=spec,  # type: ignore[arg-type]
                reason=reason,
                requested_by=world.admin["id"],
                source="api",
            )

    return asyncio.run(go())


def _cancel(url: str, world: World, command_id: Any) -> None:
    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            await control.cancel_command(
                conn, command_id=command_id, reason="by mistake", requested_by=world.admin["id"], source="api"
            )

    asyncio.run(go())


def _end(db: psycopg.Connection, command_id: Any, status: str) -> None:
    """The command ends unapplied: the control process's expiry, or the device's refusal."""
    db.execute("UPDATE commands SET status = %s, finished_at = now() WHERE id = %s", (status, command_id))


def _commands(db: psycopg.Connection, battery_id: int) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT id, action, spec, reason, status FROM commands WHERE battery_id = %s ORDER BY seq",
        (battery_id,),
    ).fetchall()


def _flag(client: TestClient, world: World, loan_id: int) -> bool:
    answer = client.get(f"/api/finance/loans/{loan_id}", headers=bearer(world.admin))
    assert answer.status_code == 200, answer.text
    return answer.json()["battery_disabled_for_overdue"]


def _ref() -> str:
    return f"R-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, finance_disable_grace_hours=0)


@pytest.fixture
def overdue_loan(client: TestClient, world: World) -> dict[str, Any]:
    """A loan of dealer A whose first EMI (1,000) is 10 days overdue."""
    return loan(client, world, months_ago=1, days_ago=10, amount=12000, tenure=12, rate=0)


def _disabled(url: str, settings: Settings, world: World) -> dict[str, Any]:
    """Warned by a run, three days on, disabled by the next."""
    assert run_overdue(url, settings, world)["disabled_count"] == 0
    age_warnings(world.conn)
    return run_overdue(url, settings, world)


def test_the_flag_is_the_disable_in_force(
    client: TestClient, world: World, database_url: str, settings: Settings, overdue_loan: dict[str, Any]
) -> None:
    battery = overdue_loan["battery"]
    assert not _flag(client, world, overdue_loan["id"])
    assert _disabled(database_url, settings, world)["disabled_count"] == 1
    assert _flag(client, world, overdue_loan["id"])
    _operator(database_url, world, battery["id"], action="enable", spec="both", reason="goodwill")
    assert not _flag(client, world, overdue_loan["id"])  # the operator's enable stands now


def test_an_expired_or_failed_disable_goes_out_again_once(
    client: TestClient, world: World, database_url: str, settings: Settings, overdue_loan: dict[str, Any]
) -> None:
    battery = overdue_loan["battery"]
    first = _disabled(database_url, settings, world)["command_ids"][0]
    _end(world.conn, first, "expired")
    assert not _flag(client, world, overdue_loan["id"])  # never reached the device
    run_overdue(database_url, settings, world)
    again = _commands(world.conn, battery["id"])
    assert [(c["action"], c["status"]) for c in again] == [("disable", "expired"), ("disable", "queued")]
    assert _flag(client, world, overdue_loan["id"])
    run_overdue(database_url, settings, world)
    assert len(_commands(world.conn, battery["id"])) == 2  # nothing more while it is pending
    _end(world.conn, again[1]["id"], "failed")
    run_overdue(database_url, settings, world)
    assert len(_commands(world.conn, battery["id"])) == 3
    paid = pay(client, world, overdue_loan["id"], 1000, _ref()).json()
    assert paid["enable_command_id"] is not None and not paid["loan"]["battery_disabled_for_overdue"]


@pytest.mark.parametrize("ended", ["expired", "failed", None])
def test_an_operators_later_disable_holds_even_unapplied(
    client: TestClient,
    world: World,
    database_url: str,
    settings: Settings,
    overdue_loan: dict[str, Any],
    ended: str | None,
) -> None:
    battery = overdue_loan["battery"]
    _disabled(database_url, settings, world)
    theirs = _operator(database_url, world, battery["id"], action="disable", spec="both", reason="stolen")
    if ended:
        _end(world.conn, theirs["id"], ended)
    paid = pay(client, world, overdue_loan["id"], 1000, _ref()).json()
    assert paid["enable_command_id"] is None and not paid["loan"]["battery_disabled_for_overdue"]
    assert [c["action"] for c in _commands(world.conn, battery["id"])] == ["disable", "disable"]


@pytest.mark.parametrize("ended", ["expired", "failed"])
def test_an_operators_earlier_disable_that_never_applied_is_not_undone(
    client: TestClient,
    world: World,
    database_url: str,
    settings: Settings,
    overdue_loan: dict[str, Any],
    ended: str,
) -> None:
    battery = overdue_loan["battery"]
    theirs = _operator(database_url, world, battery["id"], action="disable", spec="both", reason="stolen")
    _end(world.conn, theirs["id"], ended)
    result = _disabled(database_url, settings, world)
    assert result["disabled_count"] == 0 and result["deferred"][0]["reason"] == "disabled_by_operator"
    assert pay(client, world, overdue_loan["id"], 1000, _ref()).json()["enable_command_id"] is None
    assert [c["reason"] for c in _commands(world.conn, battery["id"])] == ["stolen"]


def test_an_operators_cancelled_command_overrides_nothing(
    client: TestClient, world: World, database_url: str, settings: Settings, overdue_loan: dict[str, Any]
) -> None:
    battery = overdue_loan["battery"]
    ours = _disabled(database_url, settings, world)["command_ids"][0]
    _end(world.conn, ours, "succeeded")  # applied by the device
    theirs = _operator(database_url, world, battery["id"], action="enable", spec="both", reason="oops")
    _cancel(database_url, world, theirs["id"])  # the desired state is our disable again
    assert _flag(client, world, overdue_loan["id"])
    paid = pay(client, world, overdue_loan["id"], 1000, _ref()).json()
    assert paid["enable_command_id"] is not None


def test_an_operators_discharge_cut_is_neither_a_reason_to_skip_nor_undone(
    client: TestClient, world: World, database_url: str, settings: Settings, overdue_loan: dict[str, Any]
) -> None:
    battery = overdue_loan["battery"]
    _operator(database_url, world, battery["id"], action="disable", spec="discharging", reason="inspection")
    result = _disabled(database_url, settings, world)
    assert result["disabled_count"] == 1 and result["disabled"][0]["spec"] == "charging"  # it still charged
    paid = pay(client, world, overdue_loan["id"], 1000, _ref()).json()
    assert paid["enable_command_id"] is not None
    enable = _commands(world.conn, battery["id"])[-1]
    assert (enable["action"], enable["spec"]) == ("enable", "charging")
    state = world.conn.execute(
        "SELECT desired_charging, desired_discharging FROM batteries WHERE id = %s", (battery["id"],)
    ).fetchone()
    assert state == {"desired_charging": True, "desired_discharging": False}  # the inspection holds


def test_one_enable_and_only_once_nothing_is_overdue(
    client: TestClient, world: World, database_url: str, settings: Settings
) -> None:
    two = loan(client, world, months_ago=2, days_ago=10, amount=12000, tenure=12, rate=0)  # 2 EMIs overdue
    battery = two["battery"]
    assert _disabled(database_url, settings, world)["disabled_count"] == 1
    first = pay(client, world, two["id"], 1000, _ref()).json()
    assert first["enable_command_id"] is None and first["loan"]["battery_disabled_for_overdue"]
    reference = _ref()
    cleared = pay(client, world, two["id"], 1000, reference)
    assert cleared.status_code == 201 and cleared.json()["enable_command_id"] is not None
    repeat = pay(client, world, two["id"], 1000, reference)
    assert repeat.json()["enable_command_id"] == cleared.json()["enable_command_id"]
    assert [c["action"] for c in _commands(world.conn, battery["id"])] == ["disable", "enable"]
    assert pay(client, world, two["id"], 1000, _ref()).json()["enable_command_id"] is None
    assert [c["action"] for c in _commands(world.conn, battery["id"])] == ["disable", "enable"]


def _reverse(client: TestClient, world: World, payment_id: int) -> Any:
    answer = client.post(
        f"/api/finance/payments/{payment_id}/reverse", headers=bearer(world.admin), json={"reason": "bounced"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_reversing_the_payment_that_enabled_puts_the_disable_back(
    client: TestClient, world: World, database_url: str, settings: Settings, overdue_loan: dict[str, Any]
) -> None:
    battery = overdue_loan["battery"]
    _disabled(database_url, settings, world)
    paid = pay(client, world, overdue_loan["id"], 1000, _ref()).json()
    assert paid["enable_command_id"] is not None
    reversed_ = _reverse(client, world, paid["payment"]["id"])
    assert (
        reversed_["loan"]["overdue_amount"] == "1000.00" and reversed_["loan"]["battery_disabled_for_overdue"]
    )
    assert [(c["action"], c["spec"], c["reason"]) for c in _commands(world.conn, battery["id"])] == [
        ("disable", "charging", "emi_overdue"),
        ("enable", "charging", "emi_overdue_cleared"),
        ("disable", "charging", "emi_overdue"),
    ]
    _reverse(client, world, paid["payment"]["id"])  # a second reversal is the first
    assert run_overdue(database_url, settings, world)["disabled_count"] == 0  # nothing twice
    assert len(_commands(world.conn, battery["id"])) == 3
    trail = client.get(f"/api/finance/loans/{overdue_loan['id']}/audit", headers=bearer(world.admin)).json()
    assert [e["action"] for e in trail][-2:] == ["payment_reversed", "battery_disabled"]
    again = pay(client, world, overdue_loan["id"], 1000, _ref()).json()
    assert again["enable_command_id"] is not None and not again["loan"]["battery_disabled_for_overdue"]


def test_a_reversal_leaves_an_operators_later_command_alone(
    client: TestClient, world: World, database_url: str, settings: Settings, overdue_loan: dict[str, Any]
) -> None:
    battery = overdue_loan["battery"]
    _disabled(database_url, settings, world)
    paid = pay(client, world, overdue_loan["id"], 1000, _ref()).json()
    _operator(database_url, world, battery["id"], action="disable", spec="both", reason="stolen")
    assert not _reverse(client, world, paid["payment"]["id"])["loan"]["battery_disabled_for_overdue"]
    assert [c["reason"] for c in _commands(world.conn, battery["id"])][-1] == "stolen"
