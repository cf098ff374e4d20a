"""The command endpoints: who may command what, spec errors, cancel, battery-pack enable, bulk."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests import factories
from tests.conftest import token_for
from tests.control.devices import wait_for


def _auth(user: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user)}"}


def _spec_error(answer, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert {"error", "details", "code"} <= set(body) and body["error"]
    return body


def test_a_dealer_cannot_command_another_dealers_battery(api: TestClient, dealer_setup, db) -> None:
    stranger = factories.user(db, "dealer")  # a dealer of its own
    serial = dealer_setup["serial"]
    body = _spec_error(
        api.post(f"/api/batteries/{serial}/control", json={"action": "inactive"}, headers=_auth(stranger)),
        404,
    )
    assert body["error"] == "Battery not found"
    _spec_error(
        api.post(
            f"/api/battery_pack/{serial}/enable", json={"operation_type": "disable"}, headers=_auth(stranger)
        ),
        404,
    )
    _spec_error(api.get(f"/api/batteries/{serial}/commands", headers=_auth(stranger)), 404)
    _spec_error(
        api.post(
            "/api/commands/bulk",
            json={"action": "disable", "serials": [serial], "reason": "x"},
            headers=_auth(stranger),
        ),
        404,
    )
    assert (
        db.execute(
            "SELECT count(*) AS n FROM commands WHERE battery_id = %s", (dealer_setup["battery"]["id"],)
        ).fetchone()["n"]
        == 0
    )
    # Its own command is invisible to the stranger too.
    mine = api.post(
        f"/api/batteries/{serial}/control", json={"action": "maintenance"}, headers=dealer_setup["headers"]
    )
    assert mine.status_code == 200 and mine.json()["desired_status"] == "maintenance"
    listed = api.get(f"/api/batteries/{serial}/commands", headers=dealer_setup["headers"]).json()
    _spec_error(api.get(f"/api/commands/{listed[0]['id']}", headers=_auth(stranger)), 404)
    _spec_error(api.post(f"/api/commands/{listed[0]['id']}/cancel", headers=_auth(stranger)), 404)


@pytest.mark.parametrize("role", ["consumer", "technician", "nbfc"])
def test_only_admins_and_dealers_command(api: TestClient, dealer_setup, db, role: str) -> None:
    consumer_id = factories.consumer(db, dealer_setup["dealer"]["id"])["id"] if role == "consumer" else None
    user = factories.user(db, role, consumer_id=consumer_id)
    serial = dealer_setup["serial"]
    body = _spec_error(
        api.post(f"/api/batteries/{serial}/control", json={"action": "inactive"}, headers=_auth(user)), 403
    )
    assert body["code"] == "FORBIDDEN"
    _spec_error(
        api.post(
            f"/api/battery_pack/{serial}/enable", json={"operation_type": "enable"}, headers=_auth(user)
        ),
        403,
    )
    _spec_error(api.get(f"/api/batteries/{serial}/commands", headers=_auth(user)), 403)
    _spec_error(
        api.post(
            "/api/commands/bulk",
            json={"action": "disable", "serials": [serial], "reason": "x"},
            headers=_auth(user),
        ),
        403,
    )
    _spec_error(api.post(f"/api/batteries/{serial}/control", json={"action": "inactive"}), 401)


def test_bad_bodies_get_the_spec_error(api: TestClient, dealer_setup) -> None:
    serial, headers = dealer_setup["serial"], dealer_setup["headers"]
    body = _spec_error(
        api.post(f"/api/batteries/{serial}/control", json={"action": "explode"}, headers=headers), 400
    )
    assert body["code"] == "VALIDATION_ERROR" and body["details"][0]["field"] == "action"
    _spec_error(api.post(f"/api/batteries/{serial}/control", json={}, headers=headers), 400)
    _spec_error(
        api.post(
            f"/api/battery_pack/{serial}/enable",
            json={"operation_type": "enable", "operation_specifications": "sideways"},
            headers=headers,
        ),
        400,
    )
    _spec_error(
        api.post(
            f"/api/battery_pack/{serial}/enable?wait=31", json={"operation_type": "enable"}, headers=headers
        ),
        400,
    )
    # a command id is a uuid: anything else names no command route (so GET /api/commands/bulk is a 405)
    _spec_error(api.get("/api/commands/not-a-uuid", headers=headers), 404)
    _spec_error(api.get("/api/commands/00000000-0000-0000-0000-000000000000", headers=headers), 404)
    _spec_error(
        api.post("/api/commands/bulk", json={"action": "disable", "reason": "x"}, headers=headers), 400
    )
    _spec_error(
        api.post(
            "/api/commands/bulk",
            json={"action": "disable", "reason": "x", "serials": ["bad serial!"]},
            headers=headers,
        ),
        400,
    )
    _spec_error(
        api.post(
            f"/api/batteries/{serial}/control",
            json={"action": "inactive", "expires_in_seconds": 0},
            headers=headers,
        ),
        400,
    )


def test_cancel_restores_the_desired_state_and_refuses_final_commands(
    api: TestClient, dealer_setup, db
) -> None:
    serial, headers = dealer_setup["serial"], dealer_setup["headers"]
    # No control process runs: the command stays queued.
    assert (
        api.post(
            f"/api/batteries/{serial}/control", json={"action": "deactivate"}, headers=headers
        ).status_code
        == 200
    )
    command = api.get(f"/api/batteries/{serial}/commands", headers=headers).json()[0]
    assert command["status"] == "queued" and command["action"] == "disable"
    detail = api.get(f"/api/batteries/{serial}", headers=headers).json()
    assert detail["control"]["desired"]["enabled"] is False
    assert detail["control"]["pending_command"]["id"] == command["id"]

    cancelled = api.post(
        f"/api/commands/{command['id']}/cancel", json={"reason": "customer paid"}, headers=headers
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["cancel_reason"] == "customer paid"
    assert body["cancelled_by"] == f"user:{dealer_setup['user']['id']}" and body["finished_at"]
    assert [e["status"] for e in body["events"]] == ["queued", "cancelled"]
    detail = api.get(f"/api/batteries/{serial}", headers=headers).json()
    assert detail["control"]["desired"]["enabled"] is True and detail["battery"]["status"] == "active"
    assert detail["control"]["pending_command"] is None

    again = _spec_error(api.post(f"/api/commands/{command['id']}/cancel", headers=headers), 409)
    assert again["code"] == "COMMAND_NOT_CANCELLABLE"


def test_cancelling_the_last_of_a_chain_restores_the_state_before_the_chain(
    api: TestClient, dealer_setup
) -> None:
    serial, headers = dealer_setup["serial"], dealer_setup["headers"]
    for action in ("inactive", "maintenance"):  # the second supersedes the first (no control runs)
        assert (
            api.post(f"/api/batteries/{serial}/control", json={"action": action}, headers=headers).status_code
            == 200
        )
    newest = api.get(f"/api/batteries/{serial}/commands", headers=headers).json()[0]
    assert api.post(f"/api/commands/{newest['id']}/cancel", headers=headers).status_code == 200
    detail = api.get(f"/api/batteries/{serial}", headers=headers).json()
    assert detail["battery"]["status"] == "active" and detail["control"]["desired"]["enabled"] is True
    assert detail["control"]["pending_command"] is None


def test_last_intent_wins(api: TestClient, dealer_setup, db) -> None:
    serial, headers = dealer_setup["serial"], dealer_setup["headers"]
    for action in ("inactive", "active", "maintenance"):
        assert (
            api.post(f"/api/batteries/{serial}/control", json={"action": action}, headers=headers).status_code
            == 200
        )
    newest, middle, oldest = api.get(f"/api/batteries/{serial}/commands", headers=headers).json()
    assert newest["status"] == "queued" and newest["battery_status"] == "maintenance"
    assert middle["status"] == "cancelled" and middle["superseded_by"] == newest["id"]
    assert oldest["status"] == "cancelled" and oldest["superseded_by"] == middle["id"]
    assert middle["cancel_reason"] == f"superseded by command {newest['id']}"
    battery = db.execute(
        "SELECT status, desired_status, desired_enabled FROM batteries WHERE serial_number = %s", (serial,)
    ).fetchone()
    assert battery == {"status": "active", "desired_status": "maintenance", "desired_enabled": False}


def test_battery_pack_enable_answers_200_once_applied(
    control, api: TestClient, devices, dealer_setup, db
) -> None:
    serial, headers = dealer_setup["serial"], dealer_setup["headers"]
    devices(serial)
    answer = api.post(
        f"/api/battery_pack/{serial}/enable?wait=10",
        json={
            "operation_type": "disable",
            "operation_specifications": "discharging",
            "status_label": "In Vehicle",
        },
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"issuedAt", "enabledAt"}
    assert answer.json()["issuedAt"] <= answer.json()["enabledAt"]
    row = db.execute(
        "SELECT status_label, desired_enabled, desired_spec, reported_enabled, reported_spec, status, "
        "desired_status FROM batteries WHERE serial_number = %s",
        (serial,),
    ).fetchone()
    assert row == {
        "status_label": "In Vehicle",
        "desired_enabled": False,
        "desired_spec": "discharging",
        "reported_enabled": False,
        "reported_spec": "discharging",
        # It can no longer discharge (run a vehicle): inactive, as asked and as the device confirmed.
        "status": "inactive",
        "desired_status": "inactive",
    }


def test_battery_pack_enable_answers_202_when_the_device_is_slow(api: TestClient, dealer_setup) -> None:
    serial, headers = dealer_setup["serial"], dealer_setup["headers"]
    started = time.monotonic()
    answer = api.post(
        f"/api/battery_pack/{serial}/enable?wait=0.3", json={"operation_type": "enable"}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    assert 0.3 <= time.monotonic() - started < 3
    body = answer.json()
    assert body["status"] == "queued" and body["id"] and body["issuedAt"]
    assert api.get(f"/api/commands/{body['id']}", headers=headers).json()["status"] == "queued"


def test_bulk_rolls_out_and_summarises(control, api: TestClient, devices, db) -> None:
    dealer = factories.dealer(db)
    user = factories.user(db, "dealer", dealer_id=dealer["id"])
    batteries = [factories.battery(db, dealer_id=dealer["id"]) for _ in range(6)]
    foreign = factories.battery(db, dealer_id=factories.dealer(db)["id"])
    for b in batteries[:5]:
        devices(b["serial_number"])
    devices(batteries[5]["serial_number"], mode="reject")
    answer = api.post(
        "/api/commands/bulk",
        json={
            "action": "disable",
            "filter": {"status": "active"},
            "reason": "overdue sweep",
            "rate_per_s": 50,
        },
        headers=_auth(user),
    )
    assert answer.status_code == 202, answer.text
    bulk = answer.json()
    assert (
        bulk["total"] == 6
        and bulk["rate_per_s"] == 50
        and bulk["selector"]["filter"]["dealer_id"] == dealer["id"]
    )

    def finished() -> dict | None:
        got = api.get(f"/api/commands/bulk/{bulk['id']}", headers=_auth(user)).json()
        return got if got["done"] else None

    summary = wait_for(finished, timeout=10)["summary"]
    assert summary["succeeded"] == 5 and summary["failed"] == 1 and sum(summary.values()) == 6
    assert (
        db.execute("SELECT count(*) AS n FROM commands WHERE battery_id = %s", (foreign["id"],)).fetchone()[
            "n"
        ]
        == 0
    )
    # Rolled out at the asked rate: 6 commands at 50/s are due over 100 ms, so the last one cannot go
    # out sooner than 100 ms after they were made (a late dispatcher may send the first ones together).
    due = db.execute(
        "SELECT min(created_at) AS made, max(sent_at) AS last FROM commands WHERE bulk_id = %s", (bulk["id"],)
    ).fetchone()
    assert (due["last"] - due["made"]).total_seconds() >= 0.095
    stranger = factories.user(db, "dealer")
    _spec_error(api.get(f"/api/commands/bulk/{bulk['id']}", headers=_auth(stranger)), 404)
    _spec_error(
        api.post(
            "/api/commands/bulk",
            json={"action": "disable", "filter": {"dealer_id": dealer["id"]}, "reason": "x"},
            headers=_auth(stranger),
        ),
        403,
    )


def test_admin_bulk_by_serials_names_the_missing(api: TestClient, db) -> None:
    admin = factories.user(db, "admin")
    battery = factories.battery(db, dealer_id=factories.dealer(db)["id"])
    body = _spec_error(
        api.post(
            "/api/commands/bulk",
            json={"action": "enable", "serials": [battery["serial_number"], "NOPE-1"], "reason": "x"},
            headers=_auth(admin),
        ),
        404,
    )
    assert body["details"]["missing"] == ["NOPE-1"]
    ok = api.post(
        "/api/commands/bulk",
        json={"action": "enable", "serials": [battery["serial_number"]], "reason": "x"},
        headers=_auth(admin),
    )
    assert ok.status_code == 202 and ok.json()["total"] == 1 and ok.json()["summary"]["queued"] == 1
