"""Service-desk use cases: tickets and their assignment, scoped to the caller.

Scope: admin reaches every ticket; a dealer the tickets of its batteries; a consumer opens tickets
for their own battery and follows them; a technician sees and works the tickets assigned to them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from api.auth.tokens import Principal
from api.errors import BadRequest, Conflict, Forbidden, NotFound
from api.service import queries, scoring, workflow
from api.service.models import AutoAssignRequest, TicketAssign, TicketCreate, TicketFeedback, TicketUpdate
from api.service.queries import TicketScope
from packfleet.settings import Settings

log = logging.getLogger(__name__)


def _forbidden() -> Forbidden:
    return Forbidden("Insufficient permissions for this operation")


def read_scope(principal: Principal) -> TicketScope:
    """The tickets the caller may read (403 for roles without tickets)."""
    if principal.role == "admin":
        return TicketScope()
    if principal.role == "dealer":
        return TicketScope(dealer_id=principal.dealer_id)
    if principal.role == "consumer":
        return TicketScope(consumer_id=principal.consumer_id)
    if principal.role == "technician":
        return TicketScope(technician_id=principal.user_id)
    raise _forbidden()


def _in_scope(scope: TicketScope, ticket: dict[str, Any]) -> bool:
    return (
        (scope.dealer_id is None or ticket["dealer_id"] == scope.dealer_id)
        and (scope.consumer_id is None or ticket["consumer_id"] == scope.consumer_id)
        and (scope.technician_id is None or ticket["assigned_to"] == scope.technician_id)
    )


async def visible_ticket(
    conn: AsyncConnection, *, principal: Principal, ticket_id: int, lock: bool = False
) -> dict[str, Any]:
    """The ticket if the caller may see it; 404 otherwise (we do not say it exists)."""
    scope = read_scope(principal)
    ticket = await queries.get_ticket(conn, ticket_id, lock=lock)
    if ticket is None or not _in_scope(scope, ticket):
        raise NotFound(f"No service ticket with id {ticket_id}", error="Ticket not found")
    return ticket


def _sla_seconds(settings: Settings, priority: str) -> float:
    return float(getattr(settings.service_sla_hours, priority)) * 3600.0


def _refused(exc: workflow.MoveRefused) -> Conflict:
    return Conflict(str(exc), error=f"Ticket is {exc.current}", code="INVALID_TRANSITION")


# --- opening -----------------------------------------------------------------------------------------


async def create_ticket(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, body: TicketCreate
) -> dict[str, Any]:
    """Open a ticket for a battery the caller may reach, and give it to the best free technician."""
    if principal.role not in ("admin", "dealer", "consumer"):
        raise _forbidden()
    async with conn.transaction():
        battery = await queries.battery_for_ticket(conn, body.battery_id)
        if battery is None or not (
            principal.role == "admin"
            or (principal.role == "dealer" and battery["dealer_id"] == principal.dealer_id)
            or (principal.role == "consumer" and battery["owner_id"] == principal.consumer_id)
        ):
            raise NotFound(f"No battery found with id {body.battery_id}", error="Battery not found")
        await queries.set_actor(conn, principal.actor)
        ticket_id = await queries.insert_ticket(
            conn,
            {
                **body.model_dump(
                    include={"issue_category", "description", "location", "latitude", "longitude"}
                ),
                "battery_id": battery["id"],
                "dealer_id": battery["dealer_id"],
                "consumer_id": battery["owner_id"],
                "priority": body.priority,
                "opened_by": principal.user_id,
                "sla_seconds": _sla_seconds(settings, body.priority),
            },
        )
        ticket = await queries.get_ticket(conn, ticket_id, lock=True)
        assert ticket is not None
        chosen = await _assign_best(conn, settings, ticket, actor="system:auto-assign")
        ticket = await queries.get_ticket(conn, ticket_id)
    log.info("ticket opened", extra={"ticket_id": ticket_id, "assigned_to": ticket and ticket["assigned_to"]})
    return {"ticket": ticket, "assigned_technician": chosen and chosen.technician}


async def open_health_ticket(
    conn: AsyncConnection, *, settings: Settings, battery_id: int, kind: str, category: str, reason: str
) -> int | None:
    """Open the health job's ticket for this battery and reason unless one is still active (then
    None); auto-assigned like any other. Safe from several processes at once (a unique index)."""
    await queries.set_actor(conn, "system:health", reason)
    ticket_id = await queries.insert_health_ticket(
        conn,
        battery_id=battery_id,
        kind=kind,
        category=category,
        reason=reason,
        sla_seconds=_sla_seconds(settings, "high"),
    )
    if ticket_id is None:
        return None
    ticket = await queries.get_ticket(conn, ticket_id, lock=True)
    assert ticket is not None
    await _assign_best(conn, settings, ticket, actor="system:auto-assign")
    return ticket_id


# --- assignment --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """Who took a ticket, with what score, and the other candidates with their names."""

    technician: dict[str, Any]
    best: scoring.Scored
    others: list[tuple[scoring.Scored, str]]


def _job(
    ticket: dict[str, Any], *, skill_required: str | None = None, location: str | None = None
) -> scoring.Job:
    """Where the ticket's work is (its own point, else its battery's last fix) and the skills it needs."""
    lat, lon = ticket["latitude"], ticket["longitude"]
    if lat is None:
        lat, lon = ticket.get("battery_lat"), ticket.get("battery_lon")
    return scoring.Job(
        skills=scoring.job_skills(ticket["issue_category"], skill_required),
        location=location or ticket["location"],
        lat=lat,
        lon=lon,
    )


def _technician(row: dict[str, Any]) -> scoring.Technician:
    return scoring.Technician(
        id=row["id"],
        skills=tuple(row["skills"]),
        rating=row["rating"],
        experience_years=row["experience_years"],
        current_load=row["current_load"],
        location=row["location"],
        lat=row["latitude"],
        lon=row["longitude"],
    )


async def _ranked(
    conn: AsyncConnection, settings: Settings, job: scoring.Job, *, lock: bool, location: str | None = None
) -> tuple[list[scoring.Scored], dict[int, dict[str, Any]]]:
    rows = await queries.candidates(
        conn, max_load=settings.service_technician_max_load, skills=job.skills, location=location, lock=lock
    )
    ranked = scoring.rank(
        (_technician(r) for r in rows),
        job,
        max_load=settings.service_technician_max_load,
        max_distance_km=settings.service_max_distance_km,
    )
    return ranked, {r["id"]: r for r in rows}


async def _assign_best(
    conn: AsyncConnection,
    settings: Settings,
    ticket: dict[str, Any],
    *,
    actor: str,
    skill_required: str | None = None,
    location: str | None = None,
    priority: str | None = None,
) -> Assignment | None:
    """Give the open (locked) ticket to the best suitable technician, or None when nobody suitable
    is free. Candidates' rows are locked before their loads are read."""
    job = _job(ticket, skill_required=skill_required, location=location)
    ranked, rows = await _ranked(conn, settings, job, lock=True)
    if not ranked:
        return None
    best, others = ranked[0], ranked[1:]
    await queries.set_actor(conn, actor, scoring.reason(best, others))
    await queries.assign(
        conn,
        ticket["id"],
        technician_id=best.technician.id,
        priority=priority,
        sla_seconds=None if priority is None else _sla_seconds(settings, priority),
    )
    return Assignment(rows[best.technician.id], best, [(o, rows[o.technician.id]["name"]) for o in others])


async def assign_ticket(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, ticket_id: int, body: TicketAssign
) -> dict[str, Any]:
    """Give the ticket to a named technician (an open or assigned ticket; the load limit holds)."""
    if principal.role not in ("admin", "dealer"):
        raise _forbidden()
    async with conn.transaction():
        ticket = await visible_ticket(conn, principal=principal, ticket_id=ticket_id, lock=True)
        try:
            workflow.check_assign(ticket["status"])
        except workflow.MoveRefused as exc:
            raise _refused(exc) from None
        ids = sorted({body.technician_id, *([ticket["assigned_to"]] if ticket["assigned_to"] else [])})
        locked = await queries.lock_technicians(conn, ids)
        tech = locked.get(body.technician_id)
        if tech is None or tech["role"] != "technician" or not tech["active"]:
            raise NotFound(f"No technician with id {body.technician_id}", error="Technician not found")
        if tech["status"] != "available":
            raise Conflict(f"Technician {tech['id']} is {tech['status']}", error="Technician not available")
        if (
            ticket["assigned_to"] != tech["id"]
            and tech["current_load"] >= settings.service_technician_max_load
        ):
            raise Conflict(
                f"Technician {tech['id']} already has {tech['current_load']} open tickets "
                f"(limit {settings.service_technician_max_load})",
                error="Technician at capacity",
            )
        await queries.set_actor(conn, principal.actor)
        await queries.assign(
            conn,
            ticket_id,
            technician_id=tech["id"],
            priority=body.priority,
            sla_seconds=None if body.priority is None else _sla_seconds(settings, body.priority),
        )
        ticket = await queries.get_ticket(conn, ticket_id)
    return {
        "message": "Ticket assigned successfully",
        "ticket": ticket,
        "assigned_technician": {
            "id": tech["id"],
            "name": tech["name"],
            "phone": tech["phone"],
            "role": "technician",
        },
    }


async def auto_assign(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, body: AutoAssignRequest
) -> dict[str, Any]:
    """Give an open ticket to the best-scoring suitable technician, with the other candidates."""
    if principal.role not in ("admin", "dealer"):
        raise _forbidden()
    async with conn.transaction():
        ticket = await visible_ticket(conn, principal=principal, ticket_id=body.ticket_id, lock=True)
        if ticket["status"] != "open":
            raise Conflict(
                f"Only an open ticket is auto-assigned; ticket {ticket['id']} is {ticket['status']} "
                "(use PUT /api/service/tickets/{id}/assign to reassign)",
                error=f"Ticket is {ticket['status']}",
                code="INVALID_TRANSITION",
            )
        if body.location and not ticket["location"]:
            await queries.set_actor(conn, principal.actor)
            await queries.update_ticket(conn, ticket["id"], status=None, fields={"location": body.location})
        result = await _assign_best(
            conn,
            settings,
            ticket,
            actor=principal.actor,
            skill_required=body.skill_required,
            location=body.location,
            priority=body.priority,
        )
        if result is None:
            raise Conflict(
                "No available technician below the load limit has the skills within reach",
                error="No suitable technician available",
                code="NO_TECHNICIAN",
            )
        ticket = await queries.get_ticket(conn, ticket["id"])
    tech, best = result.technician, result.best
    return {
        "message": "Ticket auto-assigned successfully",
        "ticket": ticket,
        "assigned_technician": {"id": tech["id"], "name": tech["name"], "availability_score": best.score},
        "assignment_reason": scoring.reason(best, [o for o, _ in result.others]),
        "other_candidates": [
            {"id": o.technician.id, "name": name, "score": o.score} for o, name in result.others
        ],
    }


async def available_technicians(
    conn: AsyncConnection,
    *,
    principal: Principal,
    settings: Settings,
    location: str | None,
    skill_required: str | None,
    ticket_id: int | None,
    latitude: float | None,
    longitude: float | None,
) -> list[tuple[dict[str, Any], scoring.Scored]]:
    """Suitable technicians ranked for a ticket, a point or a place (see api/service/scoring.py)."""
    if principal.role not in ("admin", "dealer"):
        raise _forbidden()
    if ticket_id is not None:
        ticket = await visible_ticket(conn, principal=principal, ticket_id=ticket_id)
        job = _job(ticket, skill_required=skill_required, location=location)
    else:
        job = scoring.Job(skills=scoring.job_skills(None, skill_required), location=location)
    if latitude is not None and longitude is not None:
        job = scoring.Job(skills=job.skills, location=job.location, lat=latitude, lon=longitude)
    # Without a point to measure from, the location names the technicians' home base.
    home = location if job.lat is None else None
    ranked, rows = await _ranked(conn, settings, job, lock=False, location=home)
    return [(rows[s.technician.id], s) for s in ranked]


# --- work --------------------------------------------------------------------------------------------


async def update_ticket(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, ticket_id: int, body: TicketUpdate
) -> dict[str, Any]:
    """Move the ticket on and record the work (technician: their tickets; admin and dealer: all moves)."""
    if principal.role not in ("admin", "dealer", "technician"):
        raise _forbidden()
    async with conn.transaction():
        ticket = await visible_ticket(conn, principal=principal, ticket_id=ticket_id, lock=True)
        if ticket["status"] == "closed":
            raise Conflict(f"Ticket {ticket_id} is closed and no longer changes", error="Ticket is closed")
        status = body.status if body.status != ticket["status"] else None
        if status is not None:
            try:
                workflow.check_update(ticket["status"], status)
            except workflow.MoveRefused as exc:
                raise _refused(exc) from None
            if principal.role == "technician" and status in ("closed", "open"):
                raise Forbidden("The dealer or an admin closes or reopens a ticket")
        fields = body.model_dump(exclude_unset=True, exclude={"status"})
        if status == "resolved" and not (fields.get("resolution_notes") or ticket["resolution_notes"]):
            raise BadRequest(
                [{"field": "resolution_notes", "message": "required to resolve a ticket"}],
                error="Invalid fields: resolution_notes",
            )
        await queries.set_actor(conn, principal.actor)
        await queries.update_ticket(conn, ticket_id, status=status, fields=fields)
        chosen = None
        if status == "open":  # reopened: find someone again, as when it was opened
            reopened = await queries.get_ticket(conn, ticket_id, lock=True)
            assert reopened is not None
            chosen = await _assign_best(conn, settings, reopened, actor="system:auto-assign")
        ticket = await queries.get_ticket(conn, ticket_id)
    return {
        "message": "Ticket updated successfully",
        "ticket": ticket,
        "assigned_technician": chosen and chosen.technician,
    }


async def give_feedback(
    conn: AsyncConnection, *, principal: Principal, ticket_id: int, body: TicketFeedback
) -> dict[str, Any]:
    """The consumer rates the service of a resolved or closed ticket, once."""
    if principal.role != "consumer":
        raise Forbidden("Only the battery's consumer rates the service")
    async with conn.transaction():
        ticket = await visible_ticket(conn, principal=principal, ticket_id=ticket_id, lock=True)
        if ticket["status"] not in workflow.DONE:
            raise Conflict(
                f"Ticket {ticket_id} is {ticket['status']}: rate it once it is resolved",
                error=f"Ticket is {ticket['status']}",
            )
        if ticket["customer_rating"] is not None:
            raise Conflict(f"Ticket {ticket_id} was already rated", error="Feedback already given")
        await queries.set_actor(conn, principal.actor)
        await queries.set_feedback(conn, ticket_id, rating=body.rating, comment=body.comment)
        ticket = await queries.get_ticket(conn, ticket_id)
    return {"message": "Thank you for your feedback", "ticket": ticket}


# --- reading -----------------------------------------------------------------------------------------


async def list_tickets(
    conn: AsyncConnection, *, principal: Principal, filters: dict[str, Any], limit: int, offset: int
) -> list[dict[str, Any]]:
    return await queries.list_tickets(
        conn, read_scope(principal), filters=filters, limit=limit, offset=offset
    )


async def active_tickets(
    conn: AsyncConnection, *, principal: Principal, limit: int, offset: int
) -> dict[str, Any]:
    scope = read_scope(principal)
    async with conn.transaction():
        await queries.read_snapshot(conn)  # the page and its counts agree
        rows = await queries.active_tickets(conn, scope, limit=limit, offset=offset)
        summary = await queries.active_summary(conn, scope)
    return {"active_tickets": rows, "count": sum(summary.values()), "summary": summary}


async def ticket_history(
    conn: AsyncConnection, *, principal: Principal, ticket_id: int
) -> list[dict[str, Any]]:
    await visible_ticket(conn, principal=principal, ticket_id=ticket_id)
    return await queries.history(conn, ticket_id)
