"""issue_command / issue_commands / cancel_command against the real database, and control over MQTT 3.1.1."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from control.commands import cancel_command, issue_command, issue_commands
from control.errors import BatteryNotFound, NotCancellable
from control.queries import NOTIFY_CHANNEL
from tests import factories
from tests.conftest import make_settings
from tests.control.conftest import FAST, command_row, events_of
from tests.control.devices import ControlThread, wait_for


async def _connect(url: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(url, row_factory=dict_row)


def test_issue_sets_desired_state_status_and_label_and_notifies_on_commit(database_url, db) -> None:
    battery = factories.battery(db, dealer_id=factories.dealer(db)["id"])
    user = factories.user(db, "admin")

    async def go() -> tuple[dict, list[str], list[str]]:
        listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        await listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        conn = await _connect(database_url)
        await conn.execute("SELECT 1")  # the caller's transaction is open: issue_command nests in it
        row = await issue_command(
            conn,
            battery_id=battery["id"],
            action="disable",
            spec="discharging",
            reason="EMI overdue",
            requested_by=user["id"],
            source="finance",
            expires_in=timedelta(hours=2),
            battery_status="inactive",
            status_label="Recovered",
        )
        before = [n.channel async for n in listener.notifies(timeout=0.2)]
        await conn.commit()
        after = [n.channel async for n in listener.notifies(timeout=2, stop_after=1)]
        await conn.close()
        await listener.close()
        return row, before, after

    row, before, after = asyncio.run(go())
    assert before == [] and after == [NOTIFY_CHANNEL]
    stored = command_row(db, str(row["id"]))
    assert (
        stored["status"] == "queued" and stored["reason"] == "EMI overdue" and stored["source"] == "finance"
    )
    assert stored["expires_at"] - stored["created_at"] == pytest.approx(
        timedelta(hours=2), abs=timedelta(seconds=5)
    )
    b = db.execute("SELECT * FROM batteries WHERE id = %s", (battery["id"],)).fetchone()
    # The wish is set; the status stays what the device confirmed until it confirms the disable.
    assert (b["desired_enabled"], b["desired_spec"], b["desired_status"], b["status_label"]) == (
        False,
        "discharging",
        "inactive",
        "Recovered",
    )
    assert b["status"] == "active"
    assert [(e["status"], e["actor"], e["detail"]) for e in events_of(db, str(row["id"]))] == [
        ("queued", f"user:{user['id']}", "EMI overdue")
    ]


def test_issue_refuses_nonsense_and_missing_batteries(database_url, db) -> None:
    battery = factories.battery(db)
    gone = factories.battery(db)
    db.execute("UPDATE batteries SET deleted_at = now() WHERE id = %s", (gone["id"],))

    async def go(**kwargs: object) -> None:
        async with await _connect(database_url) as conn:
            args = {
                "battery_id": battery["id"],
                "action": "disable",
                "spec": "both",
                "reason": "x",
                "requested_by": None,
                "source": "test",
                **kwargs,
            }
            await issue_command(conn, **args)  # type: ignore[arg-type]

    with pytest.raises(BatteryNotFound):
        asyncio.run(go(battery_id=gone["id"]))
    with pytest.raises(ValueError):
        asyncio.run(go(reason="  "))
    with pytest.raises(ValueError):
        asyncio.run(go(action="explode"))
    with pytest.raises(ValueError):
        asyncio.run(go(expires_in=timedelta(0)))
    assert (
        db.execute(
            "SELECT count(*) AS n FROM commands WHERE battery_id IN (%s, %s)", (battery["id"], gone["id"])
        ).fetchone()["n"]
        == 0
    )


def test_bulk_issue_spaces_commands_at_the_rate_and_cancel_needs_an_open_command(database_url, db) -> None:
    dealer = factories.dealer(db)
    batteries = [factories.battery(db, dealer_id=dealer["id"]) for _ in range(5)]

    async def go() -> list[dict]:
        async with await _connect(database_url) as conn:
            issued = await issue_commands(
                conn,
                battery_ids=[b["id"] for b in batteries] + [batteries[0]["id"]],
                action="disable",
                spec="both",
                reason="bulk",
                requested_by=None,
                source="test",
                rate_per_s=10,
            )
            await conn.commit()
            return issued.commands

    commands = asyncio.run(go())
    assert len(commands) == 5  # once per battery
    due = [command_row(db, str(c["id"]))["next_attempt_at"] for c in commands]
    gaps = [(b - a).total_seconds() for a, b in zip(due, due[1:], strict=False)]
    assert gaps == pytest.approx([0.1] * 4, abs=0.001)

    db.execute("UPDATE commands SET status = 'delivered' WHERE id = %s", (commands[0]["id"],))

    async def cancel(command_id: uuid.UUID) -> dict:
        async with await _connect(database_url) as conn:
            return await cancel_command(
                conn, command_id=command_id, reason="changed mind", requested_by=None, source="ops"
            )

    with pytest.raises(NotCancellable):
        asyncio.run(cancel(commands[0]["id"]))
    row = asyncio.run(cancel(commands[1]["id"]))
    assert row["status"] == "cancelled" and row["cancelled_by"] == "ops"


def test_control_over_mqtt_3_uses_plain_subscriptions(database_url, mosquitto, db, devices) -> None:
    settings = make_settings(database_url, mosquitto.url, **FAST).model_copy(update={"mqtt_protocol": 3})
    battery = factories.battery(db, dealer_id=factories.dealer(db)["id"])
    device = devices(battery["serial_number"], protocol=3)
    before = REGISTRY.get_sample_value("packfleet_command_transitions_total", {"status": "succeeded"}) or 0
    runner = ControlThread(settings, f"test-control-v3-{uuid.uuid4().hex[:8]}").start()
    try:

        async def go() -> str:
            async with await _connect(database_url) as conn:
                row = await issue_command(
                    conn,
                    battery_id=battery["id"],
                    action="disable",
                    spec="both",
                    reason="v3",
                    requested_by=None,
                    source="test",
                )
                await conn.commit()
                return str(row["id"])

        command_id = asyncio.run(go())
        wait_for(lambda: command_row(db, command_id)["status"] == "succeeded", timeout=10)
        assert device.ids() == [command_id]
        after = REGISTRY.get_sample_value("packfleet_command_transitions_total", {"status": "succeeded"})
        assert after == before + 1
        assert (
            REGISTRY.get_sample_value("packfleet_command_ack_seconds_count", {"stage": "applied"}) or 0
        ) >= 1
    finally:
        runner.stop()


def test_claim_takes_only_first_sends_when_asked(database_url, db) -> None:
    from control.queries import claim_due

    dealer = factories.dealer(db)
    fresh, resend = (
        factories.battery(db, dealer_id=dealer["id"]),
        factories.battery(db, dealer_id=dealer["id"]),
    )

    async def go() -> tuple[dict, set, set]:
        async with await _connect(database_url) as conn:
            issued = await issue_commands(
                conn,
                battery_ids=[fresh["id"], resend["id"]],
                action="disable",
                spec="both",
                reason="x",
                requested_by=None,
                source="test",
            )
            await conn.commit()
            mine = {c["battery_id"]: c["id"] for c in issued.commands}
            await conn.execute(
                "UPDATE commands SET status = 'sent', attempts = 1 WHERE id = %s", (mine[resend["id"]],)
            )
            await conn.commit()
            async with conn.transaction():  # a claim only locks; the commit lets go
                only_new = {r["id"] for r in await claim_due(conn, limit=1000, first_sends_only=True)}
            async with conn.transaction():
                everything = {r["id"] for r in await claim_due(conn, limit=1000)}
            return mine, only_new & set(mine.values()), everything & set(mine.values())

    mine, only_new, everything = asyncio.run(go())
    assert only_new == {mine[fresh["id"]]}
    assert everything == {mine[fresh["id"]], mine[resend["id"]]}
