"""Auto-assignment and availability ranking with known technicians and places; the load limit under
two processes racing for a technician's last free slot; technician management."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.auth.tokens import Principal
from api.errors import Conflict
from api.service import service
from api.service.models import AutoAssignRequest
from tests.api.conftest import World, bearer
from tests.api.service.conftest import MG_ROAD, MYSURU
from tests.conftest import make_settings
from tests.factories import unique_phone


def _open_ticket(db: psycopg.Connection, world: World, *, at: tuple[float, float] | None = MG_ROAD) -> int:
    """An open ticket of dealer A, written directly (no auto-assignment)."""
    return db.execute(
        """INSERT INTO service_tickets (battery_id, dealer_id, consumer_id, issue_category, description,
                                        latitude, longitude, sla_due_at)
           VALUES (%s, %s, %s, 'performance', 'Weak', %s, %s, now() + interval '3 days') RETURNING id""",
        (world.battery_a["id"], world.dealer_a["id"], world.consumer_a["id"], *(at or (None, None))),
    ).fetchone()["id"]


def _load(db: psycopg.Connection, world: World, tech_id: int, tickets: int) -> None:
    for _ in range(tickets):
        ticket = _open_ticket(db, world)
        db.execute(
            "UPDATE service_tickets SET status = 'assigned', assigned_to = %s WHERE id = %s",
            (tech_id, ticket),
        )


def _crew(technician: Callable[..., dict[str, Any]], db: psycopg.Connection, world: World) -> dict[str, dict]:
    crew = {
        "a": technician("Tech A", rating=4.5, experience=3, at=MG_ROAD),
        "b": technician("Tech B", rating=4.0, experience=12, at=MG_ROAD),
        "far": technician("Tech Far", rating=5.0, experience=20, at=MYSURU),
        "unskilled": technician("Tech Mech", skills=("mechanical",), rating=5.0, experience=20, at=MG_ROAD),
    }
    _load(db, world, crew["b"]["id"], 2)
    return crew


def test_auto_assign_picks_the_best_score_and_lists_the_others(
    client: TestClient, world: World, db: psycopg.Connection, technician: Callable[..., dict[str, Any]]
) -> None:
    crew = _crew(technician, db, world)
    ticket = _open_ticket(db, world)
    answer = client.post(
        "/api/service/auto-assign",
        json={"ticket_id": ticket, "priority": "high", "skill_required": "battery_maintenance"},
        headers=bearer(world.dealer_a_user),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # A: distance 30 + skill 25 + rating 4.5/5·20 = 18 + experience 3/10·10 = 3 + load 15 = 91.0
    # B: 30 + 25 + 16 + 10 (capped) + load (1 - 2/5)·15 = 9 → 90.0
    # far is out of reach, unskilled lacks the skill
    assert body["assigned_technician"] == {
        "id": crew["a"]["id"],
        "name": "Tech A",
        "availability_score": 91.0,
    }
    assert body["other_candidates"] == [{"id": crew["b"]["id"], "name": "Tech B", "score": 90.0}]
    assert body["assignment_reason"] == "Selected based on highest score: 91.0 (0.0 km away, 0 open tickets)"
    assert body["ticket"] == {
        "id": ticket,
        "battery_id": world.battery_a["id"],
        "assigned_to": crew["a"]["id"],
        "status": "assigned",
        "priority": "high",
    }
    again = client.post("/api/service/auto-assign", json={"ticket_id": ticket}, headers=bearer(world.admin))
    assert again.status_code == 409 and again.json()["error"] == "Ticket is assigned"


def test_the_battery_s_last_fix_places_a_ticket_without_coordinates(
    client: TestClient, world: World, db: psycopg.Connection, technician: Callable[..., dict[str, Any]]
) -> None:
    near = technician("Near Mysuru", at=MYSURU)
    technician("In Bengaluru", at=MG_ROAD)
    db.execute(
        """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc, lat, lon)
           VALUES (%s, now(), 50, 0, 70, %s, %s)
           ON CONFLICT (battery_id) DO UPDATE SET lat = EXCLUDED.lat, lon = EXCLUDED.lon""",
        (world.battery_a["id"], MYSURU[0] + 0.01, MYSURU[1]),
    )
    ticket = _open_ticket(db, world, at=None)
    body = client.post(
        "/api/service/auto-assign", json={"ticket_id": ticket}, headers=bearer(world.admin)
    ).json()
    assert body["assigned_technician"]["id"] == near["id"] and body["other_candidates"] == []


def test_no_suitable_technician_is_a_conflict(
    client: TestClient, world: World, db: psycopg.Connection, technician: Callable[..., dict[str, Any]]
) -> None:
    technician("Far", at=MYSURU)
    ticket = _open_ticket(db, world)
    answer = client.post("/api/service/auto-assign", json={"ticket_id": ticket}, headers=bearer(world.admin))
    assert answer.status_code == 409 and answer.json()["code"] == "NO_TECHNICIAN"
    assert (
        db.execute("SELECT status FROM service_tickets WHERE id = %s", (ticket,)).fetchone()["status"]
        == "open"
    )


def test_available_technicians_are_ranked(
    client: TestClient, world: World, db: psycopg.Connection, technician: Callable[..., dict[str, Any]]
) -> None:
    crew = _crew(technician, db, world)
    ticket = _open_ticket(db, world)
    body = client.get(
        "/api/service/technicians/available",
        params={"ticket_id": ticket, "skill_required": "battery_maintenance"},
        headers=bearer(world.dealer_a_user),
    ).json()
    assert [(t["id"], t["availability_score"], t["distance_km"]) for t in body["available_technicians"]] == [
        (crew["a"]["id"], 91.0, 0.0),
        (crew["b"]["id"], 90.0, 0.0),
    ]
    assert body["count"] == 2 and "workload" in body["scoring_algorithm"]
    first = body["available_technicians"][0]
    assert first["skills"] == ["battery_maintenance", "charging_systems", "electrical", "mechanical"]
    assert (first["rating"], first["experience_years"], first["current_load"], first["status"]) == (
        4.5,
        3,
        0,
        "available",
    )
    # by name only: technicians based there; the distance term is the names' match
    named = client.get(
        "/api/service/technicians/available",
        params={"location": "bangalore central"},
        headers=bearer(world.admin),
    ).json()
    assert {t["id"] for t in named["available_technicians"]} == {crew[k]["id"] for k in crew}
    mechanics = client.get(
        "/api/service/technicians/available",
        params={"skill_required": "mechanical"},
        headers=bearer(world.admin),
    ).json()
    assert crew["unskilled"]["id"] in {t["id"] for t in mechanics["available_technicians"]}
    bad = client.get(
        "/api/service/technicians/available", params={"latitude": 12.0}, headers=bearer(world.admin)
    )
    assert bad.status_code == 400
    assert (
        client.get(
            "/api/service/technicians/available",
            params={"latitude": "nan", "longitude": 1},
            headers=bearer(world.admin),
        ).status_code
        == 400
    )


def _race(database_url: str, ticket_id: int, principal: Principal, barrier: Any, out: Any) -> None:
    """One process: wait for the other, then auto-assign."""

    async def main() -> str:
        settings = make_settings(database_url, service_technician_max_load=1)
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            barrier.wait()
            try:
                result = await service.auto_assign(
                    conn, principal=principal, settings=settings, body=AutoAssignRequest(ticket_id=ticket_id)
                )
            except Conflict as exc:
                return f"conflict:{exc.code}"
            return f"assigned:{result['assigned_technician']['id']}"

    out.put(asyncio.run(main()))


def test_two_processes_never_both_take_the_last_free_slot(
    database_url: str, world: World, db: psycopg.Connection, technician: Callable[..., dict[str, Any]]
) -> None:
    """The load limit is 1: of two tickets auto-assigned at the same moment from two processes,
    one takes the technician, the other finds nobody free."""
    admin = Principal(user_id=world.admin["id"], role="admin")
    ctx = multiprocessing.get_context("fork")  # the children exit without running the parent's finalizers
    for _ in range(2):
        tech = technician("Last Slot")
        tickets = [_open_ticket(db, world), _open_ticket(db, world)]
        barrier, out = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(database_url, t, admin, barrier, out)) for t in tickets]
        for p in procs:
            p.start()
        results = sorted(out.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(timeout=30)
        assert results == [f"assigned:{tech['id']}", "conflict:NO_TECHNICIAN"], results
        load = db.execute("SELECT current_load FROM technicians WHERE user_id = %s", (tech["id"],)).fetchone()
        assert load["current_load"] == 1


def test_two_connections_racing_many_times(
    database_url: str, world: World, db: psycopg.Connection, technician: Callable[..., dict[str, Any]]
) -> None:
    """The same race between two connections of one process, ten times over."""
    admin = Principal(user_id=world.admin["id"], role="admin")
    settings = make_settings(database_url, service_technician_max_load=1)

    async def one(conn: psycopg.AsyncConnection, ticket: int) -> str:
        try:
            found = await service.auto_assign(
                conn, principal=admin, settings=settings, body=AutoAssignRequest(ticket_id=ticket)
            )
        except Conflict:
            return "conflict"
        return f"assigned:{found['assigned_technician']['id']}"

    async def main() -> None:
        connect = psycopg.AsyncConnection.connect
        async with (
            await connect(database_url, autocommit=True, row_factory=dict_row) as a,
            await connect(database_url, autocommit=True, row_factory=dict_row) as b,
        ):
            for _ in range(10):
                tech = technician("Last Slot")
                first, second = _open_ticket(db, world), _open_ticket(db, world)
                results = sorted(await asyncio.gather(one(a, first), one(b, second)))
                assert results == [f"assigned:{tech['id']}", "conflict"], results

    asyncio.run(main())


def test_admin_manages_technicians(client: TestClient, world: World) -> None:
    admin = bearer(world.admin)
    phone = unique_phone()
    body = {
        "phone": phone,
        "name": "Tech Two",
        "skills": ["Electrical", "battery_maintenance", "electrical"],
        "rating": 4.5,
        "experience_years": 3,
        "location": "Bangalore Central",
        "latitude": MG_ROAD[0],
        "longitude": MG_ROAD[1],
    }
    created = client.post("/api/service/technicians", json=body, headers=admin)
    assert created.status_code == 201, created.text
    tech = created.json()
    assert tech["skills"] == ["battery_maintenance", "electrical"] and tech["current_load"] == 0
    assert tech["status"] == "available" and tech["phone"] == phone
    assert client.post("/api/service/technicians", json=body, headers=admin).status_code == 409
    # a technician user added by `packfleet user add` gets its profile the same way
    existing = client.post(
        "/api/service/technicians",
        json={"phone": world.technician["phone"], "name": "Renamed"},
        headers=admin,
    )
    assert existing.status_code == 201 and existing.json()["name"] == "Renamed"
    dealer_phone = {"phone": world.dealer_a_user["phone"], "name": "Not a tech"}
    assert client.post("/api/service/technicians", json=dealer_phone, headers=admin).status_code == 409
    changed = client.patch(
        f"/api/service/technicians/{tech['id']}", json={"status": "on_leave", "rating": 3.5}, headers=admin
    )
    assert changed.status_code == 200 and (changed.json()["status"], changed.json()["rating"]) == (
        "on_leave",
        3.5,
    )
    me = client.get(f"/api/service/technicians/{world.technician['id']}", headers=bearer(world.technician))
    assert me.status_code == 200
    assert (
        client.get(f"/api/service/technicians/{tech['id']}", headers=bearer(world.technician)).status_code
        == 404
    )
    listed = client.get("/api/service/technicians", params={"status": "on_leave"}, headers=admin).json()
    assert tech["id"] in {t["id"] for t in listed}
    for bad in (
        {**body, "phone": unique_phone(), "skills": ["two words"]},
        {**body, "phone": unique_phone(), "latitude": None},
        {**body, "phone": unique_phone(), "rating": 5.5},
        {**body, "phone": unique_phone(), "experience_years": -1},
    ):
        assert client.post("/api/service/technicians", json=bad, headers=admin).status_code == 400
    assert client.patch(f"/api/service/technicians/{tech['id']}", json={}, headers=admin).status_code == 400
    assert (
        client.patch("/api/service/technicians/999999999", json={"rating": 1}, headers=admin).status_code
        == 404
    )
