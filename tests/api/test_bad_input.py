"""Input the database cannot store is the caller's error (400 in the spec's body), not a 500."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests import factories
from tests.api.conftest import World, bearer


def test_nul_characters_are_400(client: TestClient, world: World) -> None:
    h = bearer(world.admin)
    serial = world.battery_a["serial_number"]
    answers = [
        client.get("/api/battery_pack", params={"search": "a\x00b"}, headers=h),
        client.get("/api/battery_pack", params={"location": "a\x00b"}, headers=h),
        client.post("/api/battery_pack", json={"asset_tag": "NUL1", "model": "a\x00"}, headers=h),
        client.post(
            "/api/consumers",
            json={"name": "a\x00", "phone": factories.unique_phone(), "dealer_id": world.dealer_a["id"]},
            headers=h,
        ),
        client.post(
            f"/api/battery_pack/{serial}/allocate",
            json={"target_category": "User", "target_individual": "a\x00"},
            headers=h,
        ),
        client.get("/api/batteries/a%00b", headers=h),
    ]
    for answer in answers:
        assert answer.status_code == 400, (answer.request.url, answer.text)
        assert set(answer.json()) >= {"error", "details", "code"}


def test_nul_in_a_csv_row_is_reported_for_that_row(client: TestClient, world: World) -> None:
    data = b"asset_tag,model\nNULOK1,Fine\nNULBAD1,Bad\x00Model\n"
    answer = client.post(
        "/api/battery_pack", headers=bearer(world.admin), files={"file": ("p.csv", data, "text/csv")}
    )
    assert answer.status_code == 400
    assert answer.json()["details"] == [
        {"row": 2, "asset_tag": "NULBAD1", "field": "model", "error": "contains a NUL character"}
    ]
