"""Battery Management additions: assign, health report, activity log (including status changes)."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from tests import factories
from tests.api.conftest import World, bearer


def test_assign_only_to_own_consumers(client: TestClient, world: World, db: psycopg.Connection) -> None:
    serial = world.battery_a["serial_number"]
    other = factories.consumer(db, world.dealer_a["id"], "Second Customer")
    url = f"/api/batteries/{serial}/assign"
    moved = client.put(url, json={"consumer_id": other["id"]}, headers=bearer(world.dealer_a_user))
    assert moved.status_code == 200
    assert moved.json() == {
        **moved.json(),
        "serial_number": serial,
        "owner_id": other["id"],
        "status": "active",
    }
    foreign = client.put(
        url, json={"consumer_id": world.consumer_b["id"]}, headers=bearer(world.dealer_a_user)
    )
    assert foreign.status_code == 404 and foreign.json()["error"] == "Consumer not found"
    mismatch = client.put(url, json={"consumer_id": world.consumer_b["id"]}, headers=bearer(world.admin))
    assert mismatch.status_code == 409
    assert (
        client.put(url, json={"consumer_id": None}, headers=bearer(world.dealer_a_user)).json()["owner_id"]
        is None
    )
    assert client.put(url, json={}, headers=bearer(world.dealer_a_user)).status_code == 400

    unowned = factories.battery(db)
    joined = client.put(
        f"/api/batteries/{unowned['serial_number']}/assign",
        json={"consumer_id": other["id"]},
        headers=bearer(world.admin),
    )
    assert joined.status_code == 200
    assert (
        db.execute("SELECT dealer_id FROM batteries WHERE id = %s", (unowned["id"],)).fetchone()["dealer_id"]
        == world.dealer_a["id"]
    )

    log = client.get(f"/api/batteries/{serial}/activity", headers=bearer(world.dealer_a_user)).json()
    assert [a["action"] for a in log] == ["assigned", "assigned"]
    assert log[1]["detail"] == {"from_consumer_id": world.consumer_a["id"], "to_consumer_id": other["id"]}


def test_health_report_is_computed_from_the_rows(client: TestClient, db: psycopg.Connection) -> None:
    dealer = factories.user(db, "dealer")
    d = dealer["dealer_id"]
    for score, status in ((90, "active"), (80, "active"), (40, "inactive"), (55.5, "maintenance")):
        b = factories.battery(db, dealer_id=d)
        db.execute(
            "UPDATE batteries SET health_score = %s, status = %s WHERE id = %s", (score, status, b["id"])
        )
    low = factories.battery(db, dealer_id=d)
    db.execute("UPDATE batteries SET health_score = 70 WHERE id = %s", (low["id"],))
    db.execute(
        "INSERT INTO battery_latest (battery_id, ts, voltage, current, soc) VALUES (%s, now(), 48, 2, 12)",
        (low["id"],),
    )
    report = client.get("/api/batteries/health-report", headers=bearer(dealer)).json()
    assert report["fleet_health"]["active"] == {
        "count": 3,
        "avg_health": "80.0",
        "min_health": 70,
        "max_health": 90,
    }
    assert report["fleet_health"]["inactive"] == {
        "count": 1,
        "avg_health": "40.0",
        "min_health": 40,
        "max_health": 40,
    }
    assert report["fleet_health"]["maintenance"]["max_health"] == 55.5
    assert report["total_batteries"] == 5
    assert report["overall_health_score"] == round((90 + 80 + 40 + 55.5 + 70) / 5, 1)
    assert report["telemetry"] == {
        "reporting": 1,
        "online": 0,
        "low_soc": 1,
        "stale_over_1h": 0,
        "avg_soc": 12.0,
    }
    empty = client.get("/api/batteries/health-report", headers=bearer(factories.user(db, "dealer"))).json()
    assert (
        empty["total_batteries"] == 0
        and empty["fleet_health"] == {}
        and empty["overall_health_score"] is None
    )


def test_status_changes_reach_the_activity_log_from_anywhere(
    client: TestClient, world: World, db: psycopg.Connection
) -> None:
    battery = world.battery_a
    with db.transaction():
        db.execute("SELECT set_config('packfleet.actor', 'user:42', true)")
        db.execute("UPDATE batteries SET status = 'inactive' WHERE id = %s", (battery["id"],))
    db.execute("UPDATE batteries SET status = 'active' WHERE id = %s", (battery["id"],))
    db.execute(
        "UPDATE batteries SET status = 'active', online = true WHERE id = %s", (battery["id"],)
    )  # no change
    log = client.get(
        f"/api/batteries/{battery['serial_number']}/activity", headers=bearer(world.consumer_a_user)
    ).json()
    assert [(a["action"], a["actor"], a["detail"]) for a in log] == [
        ("status_changed", "system", {"from": "inactive", "to": "active"}),
        ("status_changed", "user:42", {"from": "active", "to": "inactive"}),
    ]


def test_created_battery_is_logged(client: TestClient, world: World) -> None:
    serial = factories.unique_serial("N")
    body = {"serial_number": serial, "dealer_id": world.dealer_a["id"], "health_score": 87.125}
    created = client.post("/api/batteries", json=body, headers=bearer(world.admin))
    assert created.status_code == 201, created.text
    assert created.json()["health_score"] == 87.13  # kept to two places
    log = client.get(f"/api/batteries/{serial}/activity", headers=bearer(world.dealer_a_user)).json()
    assert [(a["action"], a["actor"]) for a in log] == [("created", f"user:{world.admin['id']}")]
    assert (
        client.get(f"/api/batteries/{serial}/activity", headers=bearer(world.dealer_b_user)).status_code
        == 404
    )


def test_detail_shows_latest_reading_and_pending_command(
    client: TestClient, world: World, db: psycopg.Connection
) -> None:
    battery = world.battery_a
    url = f"/api/batteries/{battery['serial_number']}"
    bare = client.get(url, headers=bearer(world.consumer_a_user)).json()
    assert bare["telemetry"] is None and bare["control"]["pending_command"] is None
    db.execute(
        """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc, temperature, lat, lon)
           VALUES (%s, '2024-01-15T10:30:00Z', 48.5, 12.3, 85, 31.5, 12.9716, 77.5946)""",
        (battery["id"],),
    )
    command = db.execute(
        """INSERT INTO commands (id, battery_id, action, reason, expires_at)
           VALUES (gen_random_uuid(), %s, 'disable', 'test', now() + interval '1 hour') RETURNING id""",
        (battery["id"],),
    ).fetchone()
    body = client.get(url, headers=bearer(world.dealer_a_user)).json()
    assert body["battery"]["serial_number"] == battery["serial_number"]
    assert body["telemetry"] == {
        "voltage": "48.50",
        "current": "12.30",
        "soc": 85,
        "temperature": 31.5,
        "location": {"lat": "12.971600", "lng": "77.594600"},
        "timestamp": "2024-01-15T10:30:00Z",
    }
    assert body["control"]["pending_command"]["id"] == str(command["id"])
    assert body["control"]["pending_command"]["status"] == "queued"


def test_list_pages_when_asked(client: TestClient, db: psycopg.Connection) -> None:
    dealer = factories.user(db, "dealer")
    serials = [factories.battery(db, dealer_id=dealer["dealer_id"])["serial_number"] for _ in range(5)]
    everything = client.get("/api/batteries", headers=bearer(dealer)).json()
    assert [b["serial_number"] for b in everything] == serials
    page = client.get("/api/batteries", params={"limit": 2, "offset": 2}, headers=bearer(dealer)).json()
    assert [b["serial_number"] for b in page] == serials[2:4]
