"""Tickets through the API: opening with auto-assignment, every status move allowed and refused,
history, active tickets, feedback and scope."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.service import workflow
from tests.api.conftest import World, bearer
from tests.api.contract import document
from tests.api.service.conftest import MG_ROAD, WHITEFIELD, place_battery


def _open(client: TestClient, user: dict[str, Any], battery_id: int, **extra: Any) -> Any:
    body = {
        "battery_id": battery_id,
        "issue_category": "performance",
        "description": "Not holding charge",
        **extra,
    }
    return client.post("/api/service/tickets", json=body, headers=bearer(user))


def test_a_consumer_opens_a_ticket_that_goes_to_the_best_technician(
    client: TestClient, world: World, db: psycopg.Connection, technician: Callable[..., dict[str, Any]]
) -> None:
    near = technician("Near", at=MG_ROAD)
    technician("Far", at=WHITEFIELD)
    technician("Unskilled", skills=("mechanical",), at=MG_ROAD)
    place_battery(db, world.battery_a["id"], MG_ROAD)
    answer = _open(client, world.consumer_a_user, world.battery_a["id"], location="Bangalore Central")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    ticket = body["ticket"]
    assert ticket["status"] == "assigned" and ticket["assigned_to"] == near["id"]
    assert ticket["battery_serial"] == world.battery_a["serial_number"] and ticket["priority"] == "medium"
    assert body["assigned_technician"] == {
        "id": near["id"],
        "name": "Near",
        "location": "Bangalore Central",
        "status": "available",
    }
    assert (
        db.execute("SELECT current_load FROM technicians WHERE user_id = %s", (near["id"],)).fetchone()[
            "current_load"
        ]
        == 1
    )
    history = client.get(
        f"/api/service/tickets/{ticket['id']}/history", headers=bearer(world.consumer_a_user)
    ).json()
    assert [(h["action"], h["from_status"], h["to_status"]) for h in history] == [
        ("created", None, "open"),
        ("assigned", "open", "assigned"),
    ]
    assert history[0]["actor"] == f"user:{world.consumer_a_user['id']}" and history[0]["actor_name"]
    assert history[1]["actor"] == "system:auto-assign" and history[1]["to_technician_id"] == near["id"]
    assert history[1]["note"].startswith("Selected based on highest score")


def test_without_a_suitable_technician_the_ticket_stays_open(
    client: TestClient, world: World, technician: Callable[..., dict[str, Any]]
) -> None:
    technician("Off", status="off_duty")
    technician("Mechanic", skills=("mechanical",))
    answer = _open(client, world.dealer_a_user, world.battery_a["id"])
    assert answer.status_code == 201
    assert answer.json()["ticket"]["status"] == "open" and answer.json()["assigned_technician"] is None


def test_nobody_opens_a_ticket_for_a_battery_out_of_reach(client: TestClient, world: World) -> None:
    assert _open(client, world.consumer_a_user, world.battery_b["id"]).status_code == 404
    assert _open(client, world.dealer_a_user, world.battery_b["id"]).status_code == 404
    assert _open(client, world.technician, world.battery_a["id"]).status_code == 403
    assert _open(client, world.admin, 2**53 - 1).status_code == 404
    bad = _open(client, world.admin, world.battery_a["id"], latitude=12.9)
    assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_ERROR"
    assert _open(client, world.admin, world.battery_a["id"], issue_category="nope").status_code == 400


def _duty(world: World, tech: dict[str, Any], status: str) -> None:
    world.conn.execute("UPDATE technicians SET status = %s WHERE user_id = %s", (status, tech["id"]))


def _ticket_in(client: TestClient, world: World, tech: dict[str, Any], status: str) -> dict[str, Any]:
    """A ticket of dealer A brought to `status` through the API (opened while `tech` is off duty)."""
    _duty(world, tech, "off_duty")
    ticket = _open(client, world.dealer_a_user, world.battery_a["id"]).json()["ticket"]
    _duty(world, tech, "available")
    admin = bearer(world.admin)
    url = f"/api/service/tickets/{ticket['id']}"
    path = ["assigned", "in_progress", "resolved", "closed"]
    for step in path[: path.index(status) + 1] if status != "open" else []:
        if step == "assigned":
            r = client.put(f"{url}/assign", json={"technician_id": tech["id"]}, headers=admin)
        else:
            r = client.post(
                f"{url}/update", json={"status": step, "resolution_notes": "Loose connector"}, headers=admin
            )
        assert r.status_code == 200, r.text
    got = client.get(url, headers=admin).json()
    assert got["status"] == status
    return got


MOVES = [
    (a, b)
    for a, b in itertools.product(workflow.STATUSES, ("open", "in_progress", "resolved", "closed"))
    if a != b
]


@pytest.mark.parametrize(("current", "wanted"), MOVES, ids=[f"{a}->{b}" for a, b in MOVES])
def test_every_update_move(
    client: TestClient, world: World, technician: Callable[..., dict[str, Any]], current: str, wanted: str
) -> None:
    tech = technician("Worker")
    ticket = _ticket_in(client, world, tech, current)
    _duty(world, tech, "off_duty")  # a reopened ticket stays open
    answer = client.post(
        f"/api/service/tickets/{ticket['id']}/update",
        json={"status": wanted, "resolution_notes": "Replaced connector"},
        headers=bearer(world.dealer_a_user),
    )
    allowed = current != "closed" and wanted in workflow.UPDATE_MOVES[current]
    if allowed:
        assert answer.status_code == 200, answer.text
        assert answer.json()["ticket"]["status"] == wanted
    else:
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"] == f"Ticket is {current}"


@pytest.mark.parametrize("current", workflow.STATUSES)
def test_assignment_from_each_status(
    client: TestClient, world: World, technician: Callable[..., dict[str, Any]], current: str
) -> None:
    tech = technician("First")
    ticket = _ticket_in(client, world, tech, current)
    other = technician("Second")
    answer = client.put(
        f"/api/service/tickets/{ticket['id']}/assign",
        json={"technician_id": other["id"], "priority": "high"},
        headers=bearer(world.dealer_a_user),
    )
    if current in workflow.ASSIGNABLE:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["ticket"]["assigned_to"] == other["id"] and body["ticket"]["priority"] == "high"
        assert body["assigned_technician"]["role"] == "technician" and body["assigned_technician"]["phone"]
        rows = world.conn.execute(
            "SELECT user_id, current_load FROM technicians WHERE user_id = ANY(%s)",
            ([tech["id"], other["id"]],),
        )
        loads = {r["user_id"]: r["current_load"] for r in rows}
        assert loads == {tech["id"]: 0, other["id"]: 1}
    else:
        assert answer.status_code == 409 and answer.json()["error"] == f"Ticket is {current}"


def test_the_work_is_recorded_and_kept_in_the_history(
    client: TestClient, world: World, technician: Callable[..., dict[str, Any]]
) -> None:
    tech = technician("Worker")
    ticket = _open(client, world.dealer_a_user, world.battery_a["id"]).json()["ticket"]
    url = f"/api/service/tickets/{ticket['id']}"
    as_tech = bearer(tech)
    started = client.post(
        f"{url}/update", json={"status": "in_progress", "description": "Diagnosing"}, headers=as_tech
    )
    assert started.status_code == 200 and started.json()["ticket"]["started_at"]
    no_notes = client.post(f"{url}/update", json={"status": "resolved"}, headers=as_tech)
    assert no_notes.status_code == 400 and no_notes.json()["details"][0]["field"] == "resolution_notes"
    done = client.post(
        f"{url}/update",
        json={
            "status": "resolved",
            "resolution_notes": "Found loose connection",
            "parts_used": "Connector kit",
            "labor_hours": 2,
        },
        headers=as_tech,
    ).json()["ticket"]
    assert (done["status"], done["parts_used"], done["labor_hours"]) == ("resolved", "Connector kit", 2.0)
    assert client.post(f"{url}/update", json={"status": "closed"}, headers=as_tech).status_code == 403
    assert (
        client.post(
            f"{url}/update", json={"status": "closed"}, headers=bearer(world.dealer_a_user)
        ).status_code
        == 200
    )
    assert (
        client.post(f"{url}/update", json={"description": "late"}, headers=bearer(world.admin)).status_code
        == 409
    )
    history = client.get(f"{url}/history", headers=bearer(world.dealer_a_user)).json()
    assert [(h["action"], h["to_status"]) for h in history] == [
        ("created", "open"),
        ("assigned", "assigned"),
        ("status_changed", "in_progress"),
        ("status_changed", "resolved"),
        ("status_changed", "closed"),
    ]
    assert history[2]["changes"] == {"description": {"from": "Not holding charge", "to": "Diagnosing"}}
    assert history[3]["changes"]["labor_hours"] == {"from": None, "to": 2.0}
    assert (
        history[3]["actor"] == f"user:{tech['id']}"
        and history[4]["actor"] == f"user:{world.dealer_a_user['id']}"
    )
    assert client.post(f"{url}/update", json={}, headers=as_tech).status_code == 400
    assert client.post(f"{url}/update", json={"labor_hours": -1}, headers=as_tech).status_code == 400


def test_reopening_unassigns_and_assigns_again(
    client: TestClient, world: World, technician: Callable[..., dict[str, Any]]
) -> None:
    first = technician("First")
    ticket = _ticket_in(client, world, first, "resolved")
    reopened = client.post(
        f"/api/service/tickets/{ticket['id']}/update",
        json={"status": "open"},
        headers=bearer(world.dealer_a_user),
    ).json()
    # the only free technician takes it again, through the auto-assignment
    assert reopened["ticket"]["status"] == "assigned" and reopened["assigned_technician"]["id"] == first["id"]
    assert reopened["ticket"]["resolved_at"] is None
    history = client.get(f"/api/service/tickets/{ticket['id']}/history", headers=bearer(world.admin)).json()
    assert [(h["from_status"], h["to_status"]) for h in history[-2:]] == [
        ("resolved", "open"),
        ("open", "assigned"),
    ]


def test_a_technician_sees_and_works_only_their_tickets(
    client: TestClient, world: World, technician: Callable[..., dict[str, Any]]
) -> None:
    mine, theirs = technician("Mine"), technician("Theirs")
    a = _ticket_in(client, world, mine, "assigned")
    b = _ticket_in(client, world, theirs, "assigned")
    listed = client.get("/api/service/tickets", headers=bearer(mine)).json()
    assert [t["id"] for t in listed] == [a["id"]]
    assert client.get(f"/api/service/tickets/{b['id']}", headers=bearer(mine)).status_code == 404
    answer = client.post(
        f"/api/service/tickets/{b['id']}/update", json={"status": "in_progress"}, headers=bearer(mine)
    )
    assert answer.status_code == 404
    active = client.get("/api/service/tickets/active", headers=bearer(mine)).json()
    assert [t["id"] for t in active["active_tickets"]] == [a["id"]]
    assert active["summary"] == {"open": 0, "assigned": 1, "in_progress": 0} and active["count"] == 1


def test_active_tickets_with_their_joined_fields(
    client: TestClient, world: World, db: psycopg.Connection, technician: Callable[..., dict[str, Any]]
) -> None:
    from tests import factories

    dealer = factories.dealer(db, "Active Motors")
    dealer_user = factories.user(db, "dealer", dealer_id=dealer["id"])
    consumer = factories.consumer(db, dealer["id"], "Ram Kumar")
    battery = factories.battery(db, dealer_id=dealer["id"], owner_id=consumer["id"])
    tech = technician("Tech One", status="off_duty")
    tickets = [_open(client, dealer_user, battery["id"]).json()["ticket"] for _ in range(3)]
    db.execute("UPDATE technicians SET status = 'available' WHERE user_id = %s", (tech["id"],))
    h = bearer(dealer_user)
    client.put(
        f"/api/service/tickets/{tickets[1]['id']}/assign", json={"technician_id": tech["id"]}, headers=h
    )
    client.put(
        f"/api/service/tickets/{tickets[2]['id']}/assign", json={"technician_id": tech["id"]}, headers=h
    )
    client.post(f"/api/service/tickets/{tickets[2]['id']}/update", json={"status": "in_progress"}, headers=h)
    body = client.get("/api/service/tickets/active", headers=h).json()
    assert body["count"] == 3 and body["summary"] == {"open": 1, "assigned": 1, "in_progress": 1}
    newest = body["active_tickets"][0]
    assert newest["id"] == tickets[2]["id"]
    assert (
        newest["battery_serial"],
        newest["consumer_name"],
        newest["consumer_phone"],
        newest["technician_name"],
    ) == (
        battery["serial_number"],
        "Ram Kumar",
        consumer["phone"],
        "Tech One",
    )
    assert body["active_tickets"][2]["technician_name"] is None
    page = client.get("/api/service/tickets/active", params={"limit": 1, "offset": 1}, headers=h).json()
    assert [t["id"] for t in page["active_tickets"]] == [tickets[1]["id"]] and page["count"] == 3
    other = client.get("/api/service/tickets/active", headers=bearer(world.dealer_b_user)).json()
    assert not {t["id"] for t in other["active_tickets"]} & {t["id"] for t in tickets}


def test_the_consumer_rates_a_resolved_ticket_once(
    client: TestClient, world: World, technician: Callable[..., dict[str, Any]]
) -> None:
    tech = technician("Rated")
    ticket = _open(client, world.consumer_a_user, world.battery_a["id"]).json()["ticket"]
    url = f"/api/service/tickets/{ticket['id']}/feedback"
    me = bearer(world.consumer_a_user)
    assert client.post(url, json={"rating": 5}, headers=me).status_code == 409  # not resolved yet
    client.post(
        f"/api/service/tickets/{ticket['id']}/update", json={"status": "in_progress"}, headers=bearer(tech)
    )
    client.post(
        f"/api/service/tickets/{ticket['id']}/update",
        json={"status": "resolved", "resolution_notes": "ok"},
        headers=bearer(tech),
    )
    assert client.post(url, json={"rating": 6}, headers=me).status_code == 400
    rated = client.post(url, json={"rating": 4, "comment": "Quick"}, headers=me)
    assert rated.status_code == 200 and rated.json()["ticket"]["customer_rating"] == 4
    assert client.post(url, json={"rating": 5}, headers=me).status_code == 409
    assert client.post(url, json={"rating": 5}, headers=bearer(world.dealer_a_user)).status_code == 403


def test_the_load_limit_holds_for_manual_assignment(
    client: TestClient,
    world: World,
    client_for: Callable[..., TestClient],
    technician: Callable[..., dict[str, Any]],
) -> None:
    tight = client_for(service_technician_max_load=1)
    tech = technician("Busy")
    first = _open(tight, world.dealer_a_user, world.battery_a["id"]).json()
    assert first["ticket"]["assigned_to"] == tech["id"]
    second = _open(tight, world.dealer_a_user, world.battery_a["id"]).json()
    assert second["ticket"]["status"] == "open"  # nobody free
    answer = tight.put(
        f"/api/service/tickets/{second['ticket']['id']}/assign",
        json={"technician_id": tech["id"]},
        headers=bearer(world.dealer_a_user),
    )
    assert answer.status_code == 409 and answer.json()["error"] == "Technician at capacity"
    assert (
        tight.put(
            f"/api/service/tickets/{second['ticket']['id']}/assign",
            json={"technician_id": world.dealer_a_user["id"]},
            headers=bearer(world.admin),
        ).status_code
        == 404
    )  # not a technician


def test_the_consumer_profile_counts_the_battery_tickets(
    client: TestClient, world: World, technician: Callable[..., dict[str, Any]]
) -> None:
    tech = technician("Profiled")
    done = _ticket_in(client, world, tech, "resolved")
    active = _open(client, world.consumer_a_user, world.battery_a["id"]).json()["ticket"]
    profile = client.get(
        f"/api/consumers/{world.consumer_a['id']}/profile", headers=bearer(world.consumer_a_user)
    )
    body = profile.json()
    battery = next(b for b in body["batteries"] if b["id"] == world.battery_a["id"])
    assert (battery["service_tickets_count"], battery["active_tickets_count"]) == (2, 1)
    assert [t["id"] for t in body["recent_tickets"]] == [active["id"], done["id"]]
    assert body["recent_tickets"][1] == {
        "id": done["id"],
        "issue_category": "performance",
        "status": "resolved",
        "battery_serial": world.battery_a["serial_number"],
        "created_at": done["created_at"],
    }
    assert (body["summary"]["total_service_tickets"], body["summary"]["active_service_tickets"]) == (2, 1)


def test_the_document_says_what_a_ticket_or_technician_body_needs(client: TestClient, world: World) -> None:
    """A lone latitude, and an empty update, were documented valid and refused: the document now
    says latitude and longitude come together (never null), and an update changes something."""
    schemas = document()["components"]["schemas"]
    together = {"latitude": ["longitude"], "longitude": ["latitude"]}
    for name in ("TicketCreate", "TechnicianCreate", "TechnicianUpdate"):
        assert schemas[name]["dependentRequired"] == together, name
        assert schemas[name]["properties"]["latitude"]["type"] == "number", name
    assert schemas["TicketUpdate"]["minProperties"] == schemas["TechnicianUpdate"]["minProperties"] == 1
    battery = world.battery_a["id"]
    for extra in ({"latitude": 12.9}, {"longitude": 77.5}, {"latitude": 12.9, "longitude": None}):
        answer = _open(client, world.admin, battery, **extra)
        assert answer.status_code == 400 and answer.json()["code"] == "VALIDATION_ERROR", (extra, answer.text)
    opened = _open(client, world.admin, battery, latitude=12.9, longitude=77.5)
    assert opened.status_code == 201, opened.text
    ticket = opened.json()["ticket"]["id"]
    empty = client.post(f"/api/service/tickets/{ticket}/update", json={}, headers=bearer(world.admin))
    assert empty.status_code == 400, empty.text


def test_a_technicians_skills_are_documented_as_taken(client: TestClient, world: World) -> None:
    """Skills were documented as any strings and "" refused: the items now carry the pattern the
    code takes (a word, any case, spaces around it trimmed)."""
    item = document()["components"]["schemas"]["TechnicianCreate"]["properties"]["skills"]["items"]
    assert item["pattern"] == "^ *[A-Za-z][A-Za-z0-9_]{0,39} *$"
    for skills in ([""], ["two words"], ["-x"]):
        body = {"phone": "+919876512345", "name": "Tech", "skills": skills}
        answer = client.post("/api/service/technicians", json=body, headers=bearer(world.admin))
        assert answer.status_code == 400 and answer.json()["error"].startswith("Invalid fields: skills"), (
            answer.text
        )
