"""Service Management endpoints (spec: ienerzy-bms-api.md, "Service Management")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ConnDep, CurrentUser, SettingsDep
from api.errors import BadRequest, error_responses
from api.service import scoring, service, technicians
from api.service.models import (
    MAX_ID,
    SKILL,
    ActiveTickets,
    AssignResult,
    AutoAssignRequest,
    AutoAssignResult,
    AvailableTechnicians,
    CreatedTicket,
    FeedbackResult,
    HistoryEntry,
    IssueCategory,
    Priority,
    Technician,
    TechnicianCreate,
    TechnicianUpdate,
    Ticket,
    TicketAssign,
    TicketCreate,
    TicketFeedback,
    TicketStatus,
    TicketUpdate,
    UpdateResult,
    WorkingStatus,
)

router = APIRouter(prefix="/api/service", tags=["Service Management"])

TicketId = Annotated[int, Path(ge=1, le=MAX_ID, description="the ticket's id")]
TechnicianId = Annotated[int, Path(ge=1, le=MAX_ID, description="the technician's user id")]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
READ_ERRORS = error_responses(400, 401, 403, 404, 429)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 429)


@router.post(
    "/tickets",
    status_code=201,
    response_model=CreatedTicket,
    responses=WRITE_ERRORS,
    summary="Create a service ticket",
)
async def create_ticket(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, body: TicketCreate
) -> dict:
    """Open a ticket for a battery (a consumer: their own). It goes at once to the best-scoring
    available technician below the load limit who has a skill the category needs, if there is one."""
    return await service.create_ticket(conn, principal=principal, settings=settings, body=body)


@router.get("/tickets", response_model=list[Ticket], responses=READ_ERRORS, summary="List service tickets")
async def list_tickets(
    conn: ConnDep,
    principal: CurrentUser,
    status: TicketStatus | None = None,
    battery_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    issue_category: IssueCategory | None = None,
    priority: Priority | None = None,
    assigned_to: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict]:
    """The caller's tickets, newest first (a technician: those assigned to them)."""
    filters = {
        "status": status,
        "battery_id": battery_id,
        "issue_category": issue_category,
        "priority": priority,
        "assigned_to": assigned_to,
    }
    return await service.list_tickets(conn, principal=principal, filters=filters, limit=limit, offset=offset)


@router.get(
    "/tickets/active", response_model=ActiveTickets, responses=READ_ERRORS, summary="Get active tickets"
)
async def active_tickets(
    conn: ConnDep, principal: CurrentUser, limit: Limit = 100, offset: Offset = 0
) -> dict:
    """Open, assigned and in-progress tickets with battery, consumer and technician; `count` and
    `summary` cover all of them, the list one page."""
    return await service.active_tickets(conn, principal=principal, limit=limit, offset=offset)


@router.get(
    "/tickets/{ticket_id}", response_model=Ticket, responses=READ_ERRORS, summary="Get a service ticket"
)
async def get_ticket(conn: ConnDep, principal: CurrentUser, ticket_id: TicketId) -> dict:
    return await service.visible_ticket(conn, principal=principal, ticket_id=ticket_id)


@router.get(
    "/tickets/{ticket_id}/history",
    response_model=list[HistoryEntry],
    responses=READ_ERRORS,
    summary="Get a ticket's history",
)
async def ticket_history(conn: ConnDep, principal: CurrentUser, ticket_id: TicketId) -> list[dict]:
    """Every change of the ticket, oldest first: who, when, status and technician from → to."""
    return await service.ticket_history(conn, principal=principal, ticket_id=ticket_id)


@router.put(
    "/tickets/{ticket_id}/assign",
    response_model=AssignResult,
    responses=WRITE_ERRORS,
    summary="Assign ticket to technician",
)
async def assign_ticket(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, ticket_id: TicketId, body: TicketAssign
) -> dict:
    """Give an open (or reassign an assigned) ticket to an available technician below the load limit."""
    return await service.assign_ticket(
        conn, principal=principal, settings=settings, ticket_id=ticket_id, body=body
    )


@router.post(
    "/tickets/{ticket_id}/update",
    response_model=UpdateResult,
    responses=WRITE_ERRORS,
    summary="Update ticket status",
)
async def update_ticket(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, ticket_id: TicketId, body: TicketUpdate
) -> dict:
    """Status moves: assigned → in_progress → resolved (needs resolution notes) → closed, and `open`
    reopens a resolved ticket (unassigned, then auto-assigned again). Anything else is a 409 naming
    the current status. A technician moves only their tickets, and neither closes nor reopens."""
    return await service.update_ticket(
        conn, principal=principal, settings=settings, ticket_id=ticket_id, body=body
    )


@router.post(
    "/tickets/{ticket_id}/feedback",
    response_model=FeedbackResult,
    responses=WRITE_ERRORS,
    summary="Rate a resolved ticket",
)
async def ticket_feedback(
    conn: ConnDep, principal: CurrentUser, ticket_id: TicketId, body: TicketFeedback
) -> dict:
    """The consumer's rating (1-5) of the service, once the ticket is resolved; counted as the
    technician's customer satisfaction in the service metrics."""
    return await service.give_feedback(conn, principal=principal, ticket_id=ticket_id, body=body)


@router.get(
    "/technicians/available",
    response_model=AvailableTechnicians,
    responses=READ_ERRORS,
    summary="Get available technicians",
)
async def available_technicians(
    conn: ConnDep,
    principal: CurrentUser,
    settings: SettingsDep,
    location: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    skill_required: Annotated[str | None, Query(pattern=SKILL)] = None,
    ticket_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="score for this ticket")] = None,
    latitude: Annotated[float | None, Query(ge=-90, le=90, allow_inf_nan=False)] = None,
    longitude: Annotated[float | None, Query(ge=-180, le=180, allow_inf_nan=False)] = None,
) -> dict:
    """Available technicians below the load limit, best first, each with its availability score
    (distance 30, skills 25, rating 20, experience 10, load 15; see `scoring_algorithm`). The
    distance is measured from the ticket (`ticket_id`) or the point (`latitude`, `longitude`);
    without either, `location` names the technicians' home base."""
    if (latitude is None) != (longitude is None):
        raise BadRequest("latitude and longitude go together", error="Invalid fields: latitude, longitude")
    ranked = await service.available_technicians(
        conn,
        principal=principal,
        settings=settings,
        location=location,
        skill_required=skill_required,
        ticket_id=ticket_id,
        latitude=latitude,
        longitude=longitude,
    )
    return {
        "available_technicians": [
            {**row, "availability_score": s.score, "distance_km": s.distance_km} for row, s in ranked
        ],
        "count": len(ranked),
        "scoring_algorithm": scoring.ALGORITHM,
    }


@router.post(
    "/auto-assign", response_model=AutoAssignResult, responses=WRITE_ERRORS, summary="Auto-assign ticket"
)
async def auto_assign(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, body: AutoAssignRequest
) -> dict:
    """Give an open ticket to the suitable technician with the highest availability score; the
    others follow with their scores. Concurrent auto-assignments never both take a last free slot."""
    return await service.auto_assign(conn, principal=principal, settings=settings, body=body)


@router.get(
    "/technicians", response_model=list[Technician], responses=READ_ERRORS, summary="List technicians"
)
async def list_technicians(
    conn: ConnDep,
    principal: CurrentUser,
    status: WorkingStatus | None = None,
    skill: Annotated[str | None, Query(pattern=SKILL)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict]:
    return await technicians.list_technicians(
        conn, principal=principal, status=status, skill=skill, limit=limit, offset=offset
    )


@router.post(
    "/technicians",
    status_code=201,
    response_model=Technician,
    responses=WRITE_ERRORS,
    summary="Add a technician",
)
async def create_technician(conn: ConnDep, principal: CurrentUser, body: TechnicianCreate) -> dict:
    """Admin: a technician user with skills, rating, experience, home base and working status (or
    the profile of an existing technician user with this phone)."""
    return await technicians.create_technician(conn, principal=principal, body=body)


@router.get(
    "/technicians/{technician_id:int}",
    response_model=Technician,
    responses=READ_ERRORS,
    summary="Get a technician",
)
async def get_technician(conn: ConnDep, principal: CurrentUser, technician_id: TechnicianId) -> dict:
    return await technicians.get_technician(conn, principal=principal, technician_id=technician_id)


@router.patch(
    "/technicians/{technician_id:int}",
    response_model=Technician,
    responses=WRITE_ERRORS,
    summary="Update a technician",
)
async def update_technician(
    conn: ConnDep, principal: CurrentUser, technician_id: TechnicianId, body: TechnicianUpdate
) -> dict:
    """Admin: change a technician's profile or working status (available, off_duty, on_leave)."""
    return await technicians.update_technician(
        conn, principal=principal, technician_id=technician_id, body=body
    )
