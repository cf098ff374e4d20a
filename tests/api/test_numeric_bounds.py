"""Every number a client sends has a documented range; the rest is a 400 in the spec's body, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests import factories
from tests.api.conftest import World, bearer


@pytest.mark.parametrize("rate", [5e-324, 1e-12, 1e-9, 0, -1, 1e308, "NaN", "Infinity"])
def test_bulk_roll_out_rates_out_of_range_are_400(client: TestClient, world: World, rate: object) -> None:
    second = factories.battery(world.conn, dealer_id=world.dealer_a["id"])
    body = {
        "action": "disable",
        "serials": [world.battery_a["serial_number"], second["serial_number"]],
        "reason": "bounds",
        "rate_per_s": rate,
    }
    answer = client.post("/api/commands/bulk", json=body, headers=bearer(world.admin))
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "VALIDATION_ERROR" and "rate_per_s" in answer.json()["error"]


def test_a_slow_roll_out_that_outlives_its_commands_is_400(client: TestClient, world: World) -> None:
    serials = [
        factories.battery(world.conn, dealer_id=world.dealer_a["id"])["serial_number"] for _ in range(3)
    ]
    body = {
        "action": "disable",
        "serials": serials,
        "reason": "slow",
        "rate_per_s": 0.01,
        "expires_in_seconds": 60,
    }
    answer = client.post("/api/commands/bulk", json=body, headers=bearer(world.admin))
    assert answer.status_code == 400, answer.text
    assert "expires_in_seconds" in answer.text


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/battery_pack", "owner_name"),
        ("/api/battery_pack", "model_name"),
        ("/api/battery_pack", "manufacturer_name"),
        ("/api/battery_pack", "location"),
        ("/api/battery_pack", "status_label"),
        ("/api/battery_pack", "search"),
        ("/api/battery_pack", "dealer_id"),
        ("/api/batteries", "status"),
        ("/api/batteries", "dealer_id"),
        ("/api/batteries/health-report", "dealer_id"),
        ("/api/consumers", "dealer_id"),
        ("/api/consumers", "kyc_status"),
    ],
)
def test_an_empty_filter_value_means_no_filter(
    client: TestClient, world: World, path: str, param: str
) -> None:
    headers = bearer(world.admin)
    unfiltered = client.get(path, headers=headers)
    empty = client.get(path, params={param: ""}, headers=headers)
    assert empty.status_code == 200, empty.text
    assert empty.json() == unfiltered.json()
