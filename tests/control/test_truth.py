"""Control tells the truth: a command succeeds only when the device says it is in the commanded state,
and a battery's `status` is what its device confirmed, with what was asked beside it."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests import factories
from tests.conftest import token_for
from tests.control.conftest import command_row
from tests.control.devices import wait_for


def _contradictions(kind: str) -> float:
    return REGISTRY.get_sample_value("packfleet_command_contradictions_total", {"kind": kind}) or 0.0


def _battery(db, serial: str) -> dict:  # type: ignore[no-untyped-def]
    return db.execute(
        """SELECT status, desired_status, desired_enabled, reported_enabled FROM batteries
           WHERE serial_number = %s""",
        (serial,),
    ).fetchone()


def test_a_disable_acked_applied_with_enabled_true_answers_as_a_rejection(
    control, api: TestClient, devices, dealer_setup, db, caplog: pytest.LogCaptureFixture
) -> None:
    serial, headers = dealer_setup["serial"], dealer_setup["headers"]
    devices(serial, mode="opposite")
    before = _contradictions("opposite_state")
    with caplog.at_level(logging.ERROR, logger="control.inbound"):
        answer = api.post(
            f"/api/battery_pack/{serial}/enable?wait=10", json={"operation_type": "disable"}, headers=headers
        )
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["code"] == "COMMAND_FAILED" and "enabledAt" not in body
    command = body["details"]["command"]
    assert command["status"] == "failed" and command["device_enabled"] is True
    assert "reports it is enabled" in command["error"] and "opposite state" in command["error"]
    # The device's word is kept: it is enabled, so the battery is still active; the wish stands beside it.
    assert _battery(db, serial) == {
        "status": "active",
        "desired_status": "inactive",
        "desired_enabled": False,
        "reported_enabled": True,
    }
    assert _contradictions("opposite_state") == before + 1
    assert any("contradicts the command" in r.getMessage() for r in caplog.records)
    detail = api.get(f"/api/batteries/{serial}", headers=headers).json()
    assert detail["control"]["in_sync"] is False and detail["control"]["pending_command"] is None


def test_an_enable_acked_applied_with_enabled_false_fails_through_the_control_endpoint(
    control, api: TestClient, devices, dealer_setup, db
) -> None:
    serial, headers = dealer_setup["serial"], dealer_setup["headers"]
    device = devices(serial)
    off = api.post(f"/api/batteries/{serial}/control", json={"action": "inactive"}, headers=headers).json()
    wait_for(lambda: command_row(db, off["command"]["id"])["status"] == "succeeded")
    assert _battery(db, serial)["status"] == "inactive"
    device.mode = "opposite"
    on = api.post(f"/api/batteries/{serial}/control", json={"action": "active"}, headers=headers)
    assert on.status_code == 200, on.text
    assert on.json()["status"] == "inactive" and on.json()["desired_status"] == "active"
    command_id = on.json()["command"]["id"]
    wait_for(lambda: command_row(db, command_id)["finished_at"] is not None)
    row = command_row(db, command_id)
    assert row["status"] == "failed" and "reports it is disabled" in row["error"]
    battery = api.get(f"/api/batteries/{serial}", headers=headers).json()
    assert battery["battery"]["status"] == "inactive" and battery["battery"]["desired_status"] == "active"
    assert battery["control"]["in_sync"] is False


def test_an_applied_ack_without_its_state_confirms_nothing(control, devices, dealer_setup, db, api) -> None:
    serial, headers = dealer_setup["serial"], dealer_setup["headers"]
    devices(serial, mode="stateless")
    before = _contradictions("state_not_reported")
    answer = api.post(
        f"/api/battery_pack/{serial}/enable?wait=10", json={"operation_type": "disable"}, headers=headers
    )
    assert answer.status_code == 409, answer.text
    assert "unconfirmed" in answer.json()["details"]["command"]["error"]
    assert _battery(db, serial)["reported_enabled"] is None and _battery(db, serial)["status"] == "active"
    assert _contradictions("state_not_reported") == before + 1


def test_status_never_claims_a_disable_that_did_not_happen(control, api: TestClient, devices, db) -> None:
    dealer = factories.dealer(db)
    user = factories.user(db, "dealer", dealer_id=dealer["id"])
    headers = {"Authorization": f"Bearer {token_for(user)}"}
    battery = factories.battery(db, dealer_id=dealer["id"])
    serial = battery["serial_number"]
    device = devices(serial, mode="silent")
    answer = api.post(
        f"/api/batteries/{serial}/control",
        json={"action": "inactive", "expires_in_seconds": 2},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "active" and answer.json()["desired_status"] == "inactive"
    assert answer.json()["command"]["status"] == "queued"

    def views() -> dict:
        detail = api.get(f"/api/batteries/{serial}", headers=headers).json()
        listed = api.get("/api/batteries", headers=headers).json()
        packs = api.get("/api/battery_pack", headers=headers).json()
        health = api.get("/api/batteries/health-report", headers=headers).json()
        return {
            "detail": (detail["battery"]["status"], detail["battery"]["desired_status"]),
            "list": [(b["status"], b["desired_status"]) for b in listed],
            "packs": [(p["status"], p["desired_status"]) for p in packs],
            "health": (sorted(health["fleet_health"]), health["awaiting_confirmation"]),
            "pending": detail["control"]["pending_command"],
        }

    while_pending = views()
    assert while_pending["detail"] == ("active", "inactive") and while_pending["pending"] is not None
    assert while_pending["list"] == while_pending["packs"] == [("active", "inactive")]
    assert while_pending["health"] == (["active"], 1)
    by = {
        q: api.get(f"/api/batteries?{q}", headers=headers).json()
        for q in ("status=inactive", "desired_status=inactive")
    }
    assert by["status=inactive"] == [] and [b["serial_number"] for b in by["desired_status=inactive"]] == [
        serial
    ]
    # Unacknowledged until it expired: the battery never stopped, and says so.
    wait_for(lambda: command_row(db, answer.json()["command"]["id"])["status"] == "expired", timeout=10)
    expired = views()
    assert expired["detail"] == ("active", "inactive") and expired["pending"] is None
    assert expired["packs"] == [("active", "inactive")] and expired["health"] == (["active"], 1)
    # A bulk "disable what is active" selects it by the confirmed status.
    bulk = api.post(
        "/api/commands/bulk",
        json={"action": "inactive", "filter": {"status": "active"}, "reason": "retry the shut-off"},
        headers=headers,
    ).json()
    assert bulk["total"] == 1
    device.mode = "ack"
    wait_for(lambda: views()["detail"] == ("inactive", "inactive"), timeout=15)
    done = views()
    assert done["packs"] == done["list"] == [("inactive", "inactive")] and done["health"] == (["inactive"], 0)
    activity = db.execute(
        "SELECT actor, detail FROM battery_activity WHERE battery_id = %s AND action = 'status_changed'",
        (battery["id"],),
    ).fetchall()
    assert activity == [{"actor": "device", "detail": {"from": "active", "to": "inactive"}}]
