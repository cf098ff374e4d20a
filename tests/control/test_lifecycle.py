"""A command's life on the real PostgreSQL and Mosquitto: published, acked, retried, expired, failed."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from tests import factories
from tests.conftest import make_settings
from tests.control.conftest import FAST, command_row, events_of
from tests.control.devices import ControlThread, Device, wait_for


def _issue(db: psycopg.Connection, battery_id: int, action: str = "disable", ttl_s: float = 60) -> str:
    """Queue a command through the domain function, as the API and finance jobs do."""
    import asyncio

    from psycopg.rows import dict_row

    from control.commands import issue_command

    async def go() -> str:
        async with await psycopg.AsyncConnection.connect(db.info.dsn, row_factory=dict_row) as conn:
            row = await issue_command(
                conn,
                battery_id=battery_id,
                action=action,  # type: ignore[arg-type]
                spec="both",
                reason="test",
                requested_by=None,
                source="test",
                expires_in=timedelta(seconds=ttl_s),
            )
            await conn.commit()
            return str(row["id"])

    return asyncio.run(go())


def test_round_trip_through_the_api(control, api: TestClient, devices, dealer_setup, db) -> None:
    serial, headers = dealer_setup["serial"], dealer_setup["headers"]
    device = devices(serial)
    answer = api.post(
        f"/api/batteries/{serial}/control",
        json={"action": "inactive", "reason": "EMI overdue"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    # Asked, not yet done: the status is the device's until it confirms.
    assert answer.json()["status"] == "active" and answer.json()["desired_status"] == "inactive"
    assert answer.json()["serial_number"] == serial and answer.json()["command"]["status"] == "queued"

    def done() -> dict | None:
        listed = api.get(f"/api/batteries/{serial}/commands", headers=headers).json()
        return listed[0] if listed and listed[0]["status"] == "succeeded" else None

    command = wait_for(done, timeout=10)
    assert device.ids() == [command["id"]]
    assert device.received[0][1]["action"] == "disable" and device.received[0][1]["spec"] == "both"
    assert 50 <= device.expiry_intervals[0] <= 60  # the TTL (60 s here) travels as the MQTT 5 message expiry
    for stamp in ("created_at", "sent_at", "delivered_at", "finished_at", "expires_at"):
        assert command[stamp], stamp
    assert command["created_at"] <= command["sent_at"] <= command["delivered_at"] <= command["finished_at"]
    assert command["reason"] == "EMI overdue" and command["requested_by"] == dealer_setup["user"]["id"]
    assert command["device_enabled"] is False and command["attempts"] == 1

    detail = api.get(f"/api/commands/{command['id']}", headers=headers).json()
    assert [e["status"] for e in detail["events"]] == ["queued", "sent", "delivered", "succeeded"]
    assert detail["events"][0]["actor"] == f"user:{dealer_setup['user']['id']}"
    assert detail["events"][0]["detail"] == "EMI overdue"

    battery = api.get(f"/api/batteries/{serial}", headers=headers).json()
    assert battery["battery"]["status"] == "inactive"
    assert battery["control"]["desired"]["enabled"] is False
    assert battery["control"]["reported"]["enabled"] is False
    assert battery["control"]["in_sync"] is True and battery["control"]["pending_command"] is None


def test_offline_battery_gets_its_command_when_it_comes_online(database_url, mosquitto, db, devices) -> None:
    # Retries far apart: only the battery coming online can explain a prompt delivery.
    settings = make_settings(
        database_url,
        mosquitto.url,
        **{**FAST, "command_retry_base_seconds": 60.0, "command_retry_max_seconds": 60.0},
    )
    battery = factories.battery(db, dealer_id=factories.dealer(db)["id"])
    runner = ControlThread(settings, f"test-control-{uuid.uuid4().hex[:8]}").start()
    try:
        command_id = _issue(db, battery["id"])
        # Published to nobody: the battery is out of coverage.
        wait_for(lambda: command_row(db, command_id)["status"] == "sent")
        assert command_row(db, command_id)["delivered_at"] is None
        device = devices(battery["serial_number"], online=False)
        device.status(online=True)
        wait_for(lambda: command_row(db, command_id)["status"] == "succeeded", timeout=5)
        row = command_row(db, command_id)
        assert row["attempts"] == 2 and device.ids() == [command_id]
        assert row["finished_at"] - row["created_at"] < timedelta(seconds=30)
    finally:
        runner.stop()


def test_silent_device_is_retried_with_backoff_then_expires(database_url, mosquitto, db, devices) -> None:
    settings = make_settings(
        database_url,
        mosquitto.url,
        **{**FAST, "command_retry_base_seconds": 0.2, "command_retry_max_seconds": 0.8},
    )
    battery = factories.battery(db, dealer_id=factories.dealer(db)["id"])
    device = devices(battery["serial_number"], mode="silent")
    runner = ControlThread(settings, f"test-control-{uuid.uuid4().hex[:8]}").start()
    try:
        command_id = _issue(db, battery["id"], ttl_s=3.5)
        wait_for(lambda: command_row(db, command_id)["status"] == "expired", timeout=10)
        row = command_row(db, command_id)
        assert row["finished_at"] >= row["expires_at"]
        assert row["finished_at"] - row["expires_at"] < timedelta(seconds=3)
        times = [t for t, c in device.received if c["id"] == command_id]
        assert len(times) == row["attempts"] >= 4 and set(device.ids()) == {command_id}
        sent_events = [e for e in events_of(db, command_id) if e["status"] == "sent"]
        assert len(sent_events) == row["attempts"]
        # The backoff is between control's publishes (the device's receipt times add the broker's
        # delivery latency, which on a loaded machine can reorder neighbouring gaps).
        published = [e["at"].timestamp() for e in sent_events]
        gaps = [b - a for a, b in zip(published, published[1:], strict=False)]
        # 0.2, 0.4, 0.8, then capped at 0.8 (+10% jitter, + up to a sweep interval of lateness)
        assert 0.1 <= gaps[0] <= 0.6 and 0.25 <= gaps[1] <= 0.9 and all(0.6 <= g <= 1.6 for g in gaps[2:])
        assert gaps[0] < gaps[1] < gaps[2]  # doubling, then capped

        # A late ack does not revive it, but tells us what the device now is.
        device.ack(command_id, "applied", enabled=False)
        wait_for(lambda: any(e["status"] == "ack_ignored" for e in events_of(db, command_id)))
        after = command_row(db, command_id)
        assert after["status"] == "expired" and after["finished_at"] == row["finished_at"]
        assert after["delivered_at"] is None
        reported = db.execute(
            "SELECT reported_enabled FROM batteries WHERE id = %s", (battery["id"],)
        ).fetchone()
        assert reported["reported_enabled"] is False
    finally:
        runner.stop()


def test_rejected_command_fails_with_the_device_error(control, db, devices) -> None:
    battery = factories.battery(db, dealer_id=factories.dealer(db)["id"])
    devices(battery["serial_number"], mode="reject")
    command_id = _issue(db, battery["id"])
    wait_for(lambda: command_row(db, command_id)["status"] == "failed")
    row = command_row(db, command_id)
    assert row["error"] == "pack temperature too high" and row["delivered_at"] and row["finished_at"]
    assert [e["status"] for e in events_of(db, command_id)] == ["queued", "sent", "delivered", "failed"]


def test_duplicate_out_of_order_unknown_and_misrouted_acks_do_not_corrupt_state(control, db, devices) -> None:
    dealer = factories.dealer(db)
    mine = factories.battery(db, dealer_id=dealer["id"])
    other = factories.battery(db, dealer_id=dealer["id"])
    device = devices(mine["serial_number"], mode="silent")
    command_id = _issue(db, mine["id"])
    wait_for(lambda: device.ids())

    # Another battery's topic acknowledging my command: dead-lettered, no effect.
    device.ack(command_id, "applied", enabled=False, topic_serial=other["serial_number"])
    # An id nobody issued: dead-lettered.
    unknown = str(uuid.uuid4())
    device.ack(unknown, "received")
    # Not JSON, and JSON that is not an ack.
    device.ack(command_id, "received", raw=b"{not json")
    device.ack(command_id, "received", raw=json.dumps({"id": command_id, "stage": "done"}).encode())

    def letters() -> list[dict]:
        return db.execute(
            "SELECT topic, reason FROM dead_letters WHERE topic IN (%s, %s) ORDER BY id",
            (f"batteries/{mine['serial_number']}/cmd/ack", f"batteries/{other['serial_number']}/cmd/ack"),
        ).fetchall()

    wait_for(lambda: len(letters()) == 4)
    assert sorted(r["reason"] for r in letters()) == [
        "ack_from_wrong_battery",
        "invalid_ack",
        "invalid_json",
        "unknown_command",
    ]
    row = command_row(db, command_id)
    assert row["status"] == "sent" and row["delivered_at"] is None and row["finished_at"] is None

    # Out of order: applied before received; then duplicates of both.
    device.ack(command_id, "applied", enabled=False)
    wait_for(lambda: command_row(db, command_id)["status"] == "succeeded")
    done = command_row(db, command_id)
    device.ack(command_id, "received")
    device.ack(command_id, "applied", enabled=True)
    device.ack(command_id, "rejected", error="late")
    wait_for(lambda: sum(e["status"] == "ack_ignored" for e in events_of(db, command_id)) == 3)
    after = command_row(db, command_id)
    for column in ("status", "delivered_at", "finished_at", "error", "device_enabled"):
        assert after[column] == done[column], column
    assert after["status"] == "succeeded" and after["error"] is None and after["device_enabled"] is False
    statuses = [e["status"] for e in events_of(db, command_id)]
    transitions = [
        s for i, s in enumerate(statuses) if s != "ack_ignored" and (i == 0 or s != statuses[i - 1])
    ]
    assert transitions == ["queued", "sent", "delivered", "succeeded"]  # re-sends of a silent device aside
    assert db.execute("SELECT count(*) AS n FROM commands WHERE id = %s", (unknown,)).fetchone()["n"] == 0


def test_commands_of_one_battery_go_one_at_a_time_in_order(control, db, devices) -> None:
    battery = factories.battery(db, dealer_id=factories.dealer(db)["id"])
    device = devices(battery["serial_number"], mode="received")  # never applies: the head stays in flight
    first = _issue(db, battery["id"], action="disable")
    wait_for(lambda: command_row(db, first)["status"] == "delivered")
    second = _issue(db, battery["id"], action="enable")  # the first is delivered: not superseded
    third = _issue(db, battery["id"], action="disable")  # supersedes the second, still queued
    assert command_row(db, second)["status"] == "cancelled"
    assert command_row(db, second)["cancel_reason"] == f"superseded by command {third}"
    import time

    time.sleep(1.0)
    assert device.ids().count(third) == 0, "published while another command of the battery was in flight"
    device.ack(first, "applied", enabled=False)
    wait_for(lambda: command_row(db, third)["status"] == "delivered")
    assert device.ids()[-1] == third and second not in device.ids()


def test_control_reconnects_after_the_broker_restarts(database_url, own_mosquitto, db) -> None:
    settings = make_settings(database_url, own_mosquitto.url, **FAST)
    battery = factories.battery(db, dealer_id=factories.dealer(db)["id"])
    device = Device(own_mosquitto.port, battery["serial_number"])
    runner = ControlThread(settings, f"test-control-{uuid.uuid4().hex[:8]}").start()
    try:
        own_mosquitto.stop()
        command_id = _issue(db, battery["id"])  # issued while the broker is away
        own_mosquitto.start()
        wait_for(lambda: command_row(db, command_id)["status"] == "succeeded", timeout=20)
        assert device.ids()[-1] == command_id
    finally:
        runner.stop()
        device.close()


def test_an_ack_the_database_refuses_is_dead_lettered_and_the_rest_go_on(
    fresh_database_url, mosquitto, devices
) -> None:
    with psycopg.connect(fresh_database_url, autocommit=True, row_factory=dict_row) as db:
        # A real refusal from PostgreSQL (here a trigger) for one device error text only.
        db.execute(
            """CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN IF NEW.error = 'poison' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$;
               CREATE TRIGGER refuse_poison BEFORE UPDATE ON commands
                   FOR EACH ROW EXECUTE FUNCTION refuse_poison();"""
        )
        dealer = factories.dealer(db)
        poisoned, healthy = (
            factories.battery(db, dealer_id=dealer["id"]),
            factories.battery(db, dealer_id=dealer["id"]),
        )
        settings = make_settings(fresh_database_url, mosquitto.url, **FAST)
        bad = devices(poisoned["serial_number"], mode="silent")
        devices(healthy["serial_number"])
        runner = ControlThread(settings, f"test-control-{uuid.uuid4().hex[:8]}").start()
        try:
            bad_id = _issue(db, poisoned["id"])
            wait_for(lambda: bad.ids())
            bad.ack(bad_id, "rejected", error="poison")
            letter = wait_for(
                lambda: db.execute(
                    "SELECT reason, detail FROM dead_letters WHERE reason = 'unprocessable'"
                ).fetchone(),
                timeout=15,
            )
            assert "refused" in letter["detail"]
            good_id = _issue(db, healthy["id"])
            wait_for(lambda: command_row(db, good_id)["status"] == "succeeded")
            assert command_row(db, bad_id)["status"] == "sent"  # unchanged; the device will be asked again
        finally:
            runner.stop()
