"""Authorization cases of the Service Management routes (collected by test_authorization.py).

The world's ticket is on dealer A's battery (owned by the world's consumer) and assigned to the
world's technician: dealer B never sees it (404), the technician works it, the consumer follows it.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.authz import Case, statuses
from tests.api.conftest import World
from tests.factories import unique_phone

PREFIXES = ("/api/service",)

ALL_SKILLS = ["battery_maintenance", "diagnostics", "charging_systems", "electrical", "mechanical"]


def _technician(w: World) -> int:
    """The world's technician, with a profile that can take any ticket."""
    w.conn.execute(
        """INSERT INTO technicians (user_id, skills, rating, experience_years, location)
           VALUES (%s, %s, 4.5, 3, 'Bangalore Central') ON CONFLICT (user_id) DO NOTHING""",
        (w.technician["id"], ALL_SKILLS),
    )
    return int(w.technician["id"])


def _ticket(w: World, status: str = "assigned") -> int:
    """A ticket of battery A in `status` (assigned to the world's technician unless open)."""
    tech = None if status == "open" else _technician(w)
    return w.conn.execute(
        """INSERT INTO service_tickets (battery_id, dealer_id, consumer_id, issue_category, description,
                                        status, assigned_to, resolution_notes, sla_due_at)
           VALUES (%s, %s, %s, 'performance', 'Slow charging', %s, %s, 'Fixed', now() + interval '1 day')
           RETURNING id""",
        (w.battery_a["id"], w.dealer_a["id"], w.consumer_a["id"], status, tech),
    ).fetchone()["id"]


def _no_foreign_tickets(w: World, role: str, body: Any) -> None:
    rows = body["active_tickets"] if isinstance(body, dict) else body
    if role in ("other_dealer",):
        assert all(t["battery_id"] != w.battery_a["id"] for t in rows)
    if role in ("dealer", "consumer"):
        assert all(t["battery_id"] != w.battery_b["id"] for t in rows)


def _listing(w: World, c: TestClient, url: str) -> tuple[str, dict[str, Any]]:
    _ticket(w)
    return url, {}


def _auto_assign_body(w: World) -> dict[str, Any]:
    _technician(w)  # someone suitable is free
    return {"ticket_id": _ticket(w, "open"), "skill_required": "diagnostics"}


TICKET_READ = statuses(200, 200, 404, 200, 200)
DESK_WRITE = statuses(200, 200, 404, 403)
STAFF_LIST = statuses(200, 200, 200, 403)
ADMIN_ONLY = statuses(200, 403, 403, 403)

CASES: dict[tuple[str, str], Case] = {
    ("POST", "/api/service/tickets"): Case(
        lambda w, c: (
            "/api/service/tickets",
            {
                "json": {
                    "battery_id": w.battery_a["id"],
                    "issue_category": "charging",
                    "description": "No charge",
                }
            },
        ),
        statuses(201, 201, 404, 201),
    ),
    ("GET", "/api/service/tickets"): Case(
        lambda w, c: _listing(w, c, "/api/service/tickets"),
        statuses(200, 200, 200, 200, 200),
        _no_foreign_tickets,
    ),
    ("GET", "/api/service/tickets/active"): Case(
        lambda w, c: _listing(w, c, "/api/service/tickets/active"),
        statuses(200, 200, 200, 200, 200),
        _no_foreign_tickets,
    ),
    ("GET", "/api/service/tickets/{ticket_id}"): Case(
        lambda w, c: (f"/api/service/tickets/{_ticket(w)}", {}), TICKET_READ
    ),
    ("GET", "/api/service/tickets/{ticket_id}/history"): Case(
        lambda w, c: (f"/api/service/tickets/{_ticket(w)}/history", {}), TICKET_READ
    ),
    ("PUT", "/api/service/tickets/{ticket_id}/assign"): Case(
        lambda w, c: (
            f"/api/service/tickets/{_ticket(w, 'open')}/assign",
            {"json": {"technician_id": _technician(w), "priority": "high"}},
        ),
        DESK_WRITE,
    ),
    ("POST", "/api/service/tickets/{ticket_id}/update"): Case(
        lambda w, c: (f"/api/service/tickets/{_ticket(w)}/update", {"json": {"status": "in_progress"}}),
        statuses(200, 200, 404, 403, 200),
    ),
    ("POST", "/api/service/tickets/{ticket_id}/feedback"): Case(
        lambda w, c: (f"/api/service/tickets/{_ticket(w, 'resolved')}/feedback", {"json": {"rating": 5}}),
        statuses(403, 403, 403, 200),
    ),
    ("GET", "/api/service/technicians/available"): Case(
        lambda w, c: ("/api/service/technicians/available", {"params": {"skill_required": "electrical"}}),
        STAFF_LIST,
    ),
    ("POST", "/api/service/auto-assign"): Case(
        lambda w, c: ("/api/service/auto-assign", {"json": _auto_assign_body(w)}), DESK_WRITE
    ),
    ("GET", "/api/service/technicians"): Case(lambda w, c: ("/api/service/technicians", {}), STAFF_LIST),
    ("POST", "/api/service/technicians"): Case(
        lambda w, c: (
            "/api/service/technicians",
            {"json": {"phone": unique_phone(), "name": "New Tech", "skills": ["electrical"]}},
        ),
        statuses(201, 403, 403, 403),
    ),
    ("GET", "/api/service/technicians/{technician_id}"): Case(
        lambda w, c: (f"/api/service/technicians/{_technician(w)}", {}), statuses(200, 200, 200, 403, 200)
    ),
    ("PATCH", "/api/service/technicians/{technician_id}"): Case(
        lambda w, c: (f"/api/service/technicians/{_technician(w)}", {"json": {"status": "on_leave"}}),
        ADMIN_ONLY,
    ),
}
