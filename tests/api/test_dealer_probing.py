"""What a dealer can learn about another dealer's fleet: nothing it could not learn about a serial
that does not exist (README: "Who registers batteries")."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests import factories
from tests.api.conftest import World, bearer

# (method, path with {serial}, keyword arguments) of every route a dealer may send a serial to
PROBES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/batteries", {"json": {"serial_number": "{serial}"}}),
    ("POST", "/api/battery_pack", {"json": {"asset_tag": "{serial}", "model": "M"}}),
    ("POST", "/api/battery_pack", {"json": [{"asset_tag": "{serial}"}]}),
    ("POST", "/api/battery_pack?dry_run=true", {"json": [{"asset_tag": "{serial}"}]}),
    ("GET", "/api/batteries/{serial}", {}),
    ("PUT", "/api/batteries/{serial}/assign", {"json": {"consumer_id": None}}),
    ("GET", "/api/batteries/{serial}/activity", {}),
    ("GET", "/api/batteries/{serial}/commands", {}),
    ("POST", "/api/batteries/{serial}/control", {"json": {"action": "inactive"}}),
    ("GET", "/api/battery_pack/{serial}", {}),
    ("PATCH", "/api/battery_pack/{serial}", {"json": {"location": "Pune"}}),
    ("DELETE", "/api/battery_pack/{serial}", {}),
    ("GET", "/api/battery_pack/{serial}/activity", {}),
    (
        "POST",
        "/api/battery_pack/{serial}/allocate",
        {"json": {"target_category": "User", "target_individual": "x"}},
    ),
    ("POST", "/api/battery_pack/{serial}/enable", {"json": {"operation_type": "disable"}}),
    ("PATCH", "/api/battery_pack", {"json": [{"asset_tag": "{serial}", "location": "Pune"}]}),
    ("DELETE", "/api/battery_pack", {"json": {"asset_tags": ["{serial}"]}}),
    (
        "POST",
        "/api/commands/bulk",
        {"json": {"action": "disable", "serials": ["{serial}"], "reason": "probe"}},
    ),
    ("GET", "/api/telemetry/{serial}", {}),
]


def _fill(value: Any, serial: str) -> Any:
    if isinstance(value, str):
        return value.replace("{serial}", serial)
    if isinstance(value, list):
        return [_fill(v, serial) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, serial) for k, v in value.items()}
    return value


def _answer(client: TestClient, headers: dict[str, str], probe: tuple[str, str, dict[str, Any]], serial: str):  # type: ignore[no-untyped-def]
    method, path, kwargs = probe
    answer = client.request(method, _fill(path, serial), headers=headers, **_fill(kwargs, serial))
    text = answer.text.replace(serial, "SERIAL")
    return answer.status_code, text


@pytest.mark.parametrize("probe", PROBES, ids=[f"{m} {p}" for m, p, _ in PROBES])
def test_another_dealers_serial_answers_as_a_serial_that_does_not_exist(
    client: TestClient, world: World, probe: tuple[str, str, dict[str, Any]]
) -> None:
    headers = bearer(world.dealer_a_user)
    theirs = world.battery_b["serial_number"]
    deleted = factories.battery(world.conn, dealer_id=world.dealer_b["id"])
    world.conn.execute("UPDATE batteries SET deleted_at = now() WHERE id = %s", (deleted["id"],))
    nowhere = factories.unique_serial("N")
    expected = _answer(client, headers, probe, nowhere)
    assert expected[0] in (403, 404), expected
    assert _answer(client, headers, probe, theirs) == expected
    assert _answer(client, headers, probe, deleted["serial_number"]) == expected


def test_another_dealers_consumers_and_battery_ids_answer_as_unknown_ones(
    client: TestClient, world: World
) -> None:
    """Messages: a dealer texting another dealer's consumer, or notifying about another dealer's
    battery, learns what it learns of a phone or an id that exists nowhere."""
    headers = bearer(world.dealer_a_user)

    def sms(phone: str) -> tuple[int, str]:
        answer = client.post(
            "/api/messaging/send-sms",
            params={"wait": 0},
            json={"to": phone, "message": "hi"},
            headers=headers,
        )
        return answer.status_code, answer.text.replace(phone, "PHONE")

    def notice(battery_id: int) -> tuple[int, str]:
        body = {"battery_id": battery_id, "consumer_phone": world.consumer_a["phone"], "status": "active"}
        answer = client.post("/api/messaging/battery-status", params={"wait": 0}, json=body, headers=headers)
        return answer.status_code, answer.text.replace(str(battery_id), "ID")

    assert sms(world.consumer_b["phone"]) == sms(factories.unique_phone())
    assert sms(world.consumer_b["phone"])[0] == 404
    assert notice(world.battery_b["id"]) == notice(2**53 - 1)
    assert notice(world.battery_b["id"])[0] == 404
