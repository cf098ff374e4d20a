"""Request and response bodies of the Service Management API, in the spec's shapes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.service.scoring import ALGORITHM
from api.shapes import MAX_ID, Body, optional_not_null

IssueCategory = Literal["performance", "charging", "mechanical", "electrical", "other"]
Priority = Literal["low", "medium", "high", "critical"]
TicketStatus = Literal["open", "assigned", "in_progress", "resolved", "closed"]
WorkingStatus = Literal["available", "off_duty", "on_leave"]

SKILL = r"^[a-z][a-z0-9_]{0,39}$"
Id = Field(ge=1, le=MAX_ID)
# A skill as a client may write it (stored stripped and lower case): the document says so, where
# it said any string ("" was documented valid and refused).
Skill = Annotated[str, Field(pattern=r"^ *[A-Za-z][A-Za-z0-9_]{0,39} *$", examples=["battery_maintenance"])]


def _coordinates_together(model: Any) -> Any:
    if (model.latitude is None) != (model.longitude is None):
        raise ValueError("latitude and longitude go together: give both or neither")
    return model


# Where a model takes a point, latitude and longitude come together or not at all, and neither is
# null: the document says so (`dependentRequired`), as `_coordinates_together` checks.
TOGETHER = {"dependentRequired": {"latitude": ["longitude"], "longitude": ["latitude"]}}


def _latitude(description: str) -> Any:
    return Field(
        default=None, ge=-90, le=90, allow_inf_nan=False, description=description, examples=[12.9716]
    )


def _longitude(description: str) -> Any:
    return Field(
        default=None, ge=-180, le=180, allow_inf_nan=False, description=description, examples=[77.5946]
    )


# --- requests -------------------------------------------------------------------------------------


class TicketCreate(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=optional_not_null(**TOGETHER))

    battery_id: int = Field(ge=1, le=MAX_ID, examples=[1])
    issue_category: IssueCategory = Field(examples=["performance"])
    description: str = Field(min_length=1, max_length=2000, examples=["Battery not holding charge properly"])
    location: str | None = Field(default=None, min_length=1, max_length=200, examples=["Bangalore Central"])
    latitude: float = _latitude("where the work is; default: the battery's last GPS fix")
    longitude: float = _longitude("where the work is; default: the battery's last GPS fix")
    priority: Priority = "medium"

    @model_validator(mode="after")
    def _check(self) -> TicketCreate:
        return _coordinates_together(self)


class TicketAssign(Body):
    model_config = ConfigDict(extra="forbid")

    technician_id: int = Field(ge=1, le=MAX_ID, examples=[2])
    priority: Priority | None = Field(default=None, examples=["high"], description="unchanged when absent")


class TicketUpdate(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    status: Literal["open", "in_progress", "resolved", "closed"] | None = Field(
        default=None,
        examples=["in_progress"],
        description="assigned → in_progress → resolved → closed; `open` reopens a resolved ticket",
    )
    description: str | None = Field(default=None, min_length=1, max_length=2000)
    resolution_notes: str | None = Field(default=None, min_length=1, max_length=4000)
    parts_used: str | None = Field(default=None, min_length=1, max_length=1000, examples=["Connector kit"])
    labor_hours: float | None = Field(default=None, ge=0, le=1000, allow_inf_nan=False, examples=[2])

    @model_validator(mode="after")
    def _something(self) -> TicketUpdate:
        if not self.model_fields_set:
            raise ValueError(
                "give at least one of status, description, resolution_notes, parts_used, labor_hours"
            )
        return self


class AutoAssignRequest(Body):
    model_config = ConfigDict(extra="forbid")

    ticket_id: int = Field(ge=1, le=MAX_ID, examples=[1])
    location: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        examples=["Bangalore Central"],
        description="where the work is, by name (kept on a ticket that has none)",
    )
    priority: Priority | None = Field(default=None, examples=["medium"])
    skill_required: str | None = Field(
        default=None, pattern=SKILL, examples=["battery_maintenance"], description="default: the category's"
    )


class TicketFeedback(Body):
    model_config = ConfigDict(extra="forbid")

    rating: int = Field(ge=1, le=5, examples=[5])
    comment: str | None = Field(default=None, min_length=1, max_length=2000)


class TechnicianCreate(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=optional_not_null(**TOGETHER))

    phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", examples=["+919876543211"])
    name: str = Field(min_length=1, max_length=200, examples=["Tech Two"])
    skills: list[Skill] = Field(
        default_factory=list, max_length=20, examples=[["battery_maintenance", "electrical"]]
    )
    rating: float = Field(default=0, ge=0, le=5, allow_inf_nan=False, examples=[4.5])
    experience_years: int = Field(default=0, ge=0, le=60, examples=[3])
    location: str | None = Field(default=None, min_length=1, max_length=200, examples=["Bangalore Central"])
    latitude: float = _latitude("home base")
    longitude: float = _longitude("home base")
    status: WorkingStatus = "available"

    @model_validator(mode="after")
    def _check(self) -> TechnicianCreate:
        _coordinates_together(self)
        self.skills = _check_skills(self.skills)
        return self


class TechnicianUpdate(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra=optional_not_null(minProperties=1, **TOGETHER)
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    skills: list[Skill] | None = Field(default=None, max_length=20)
    rating: float | None = Field(default=None, ge=0, le=5, allow_inf_nan=False)
    experience_years: int | None = Field(default=None, ge=0, le=60)
    location: str | None = Field(default=None, min_length=1, max_length=200)
    latitude: float = _latitude("home base")
    longitude: float = _longitude("home base")
    status: WorkingStatus | None = None

    @model_validator(mode="after")
    def _check(self) -> TechnicianUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        if ("latitude" in self.model_fields_set) != ("longitude" in self.model_fields_set):
            raise ValueError("latitude and longitude go together")
        _coordinates_together(self)
        if self.skills is not None:
            self.skills = _check_skills(self.skills)
        return self


def _check_skills(skills: list[str]) -> list[str]:
    pattern = re.compile(SKILL)
    cleaned = [s.strip().lower() for s in skills]
    bad = [s for s in cleaned if not pattern.match(s)]
    if bad:
        raise ValueError(f"skills are snake_case words (a-z, 0-9, _; up to 40): {bad[:3]}")
    return sorted(set(cleaned))


# --- responses ------------------------------------------------------------------------------------


class Ticket(BaseModel):
    """A service ticket (the spec's ticket object, with its priority, work record and times)."""

    id: int
    battery_id: int
    battery_serial: str
    issue_category: IssueCategory
    description: str
    assigned_to: int | None
    status: TicketStatus
    priority: Priority
    location: str | None
    latitude: float | None
    longitude: float | None
    resolution_notes: str | None
    parts_used: str | None
    labor_hours: float | None
    customer_rating: int | None
    source: Literal["api", "health"] = Field(description="`health`: opened by the battery-health job")
    auto_kind: str | None = Field(description="why the health job opened it")
    sla_due_at: datetime
    created_at: datetime
    updated_at: datetime
    assigned_at: datetime | None
    started_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None


class TicketTechnician(BaseModel):
    """The technician as the create response shows them."""

    id: int
    name: str
    location: str | None
    status: WorkingStatus


class CreatedTicket(BaseModel):
    ticket: Ticket
    assigned_technician: TicketTechnician | None = Field(
        description="null when no suitable technician was free: the ticket stays open"
    )


class ActiveTicket(BaseModel):
    id: int
    battery_id: int
    issue_category: IssueCategory
    description: str
    assigned_to: int | None
    status: Literal["open", "assigned", "in_progress"]
    priority: Priority
    location: str | None
    battery_serial: str
    consumer_name: str | None
    consumer_phone: str | None
    technician_name: str | None
    sla_due_at: datetime
    created_at: datetime


class ActiveSummary(BaseModel):
    open: int
    assigned: int
    in_progress: int


class ActiveTickets(BaseModel):
    active_tickets: list[ActiveTicket] = Field(description="newest first, one page (limit, offset)")
    count: int = Field(description="active tickets in the caller's scope (all pages)")
    summary: ActiveSummary


class AssignedUser(BaseModel):
    id: int
    name: str
    phone: str
    role: Literal["technician"]


class AssignResult(BaseModel):
    message: str
    ticket: Ticket
    assigned_technician: AssignedUser


class UpdateResult(BaseModel):
    message: str
    ticket: Ticket
    assigned_technician: TicketTechnician | None = Field(
        default=None, description="after a reopen: the technician it was auto-assigned to, if any"
    )


class FeedbackResult(BaseModel):
    message: str
    ticket: Ticket


class AvailableTechnician(BaseModel):
    id: int
    name: str
    location: str | None
    status: WorkingStatus
    skills: list[str]
    rating: float
    experience_years: int
    current_load: int
    availability_score: float = Field(
        ge=0,
        le=100,
        description=(
            "weighted mean ×100 of distance 30 (1 - km / reach), skills 25 (share held of those needed), "
            "rating 20 (rating / 5), experience 10 (years / 10, capped) and load 15 (1 - load / limit); "
            "terms that cannot be judged are left out and the rest scaled to 100"
        ),
    )
    distance_km: float | None = Field(description="from the ticket or the given point; null if unknown")


class AvailableTechnicians(BaseModel):
    available_technicians: list[AvailableTechnician]
    count: int
    scoring_algorithm: str = Field(examples=[ALGORITHM])


class AutoAssignedTicket(BaseModel):
    id: int
    battery_id: int
    assigned_to: int
    status: Literal["assigned"]
    priority: Priority


class ScoredTechnician(BaseModel):
    id: int
    name: str
    availability_score: float


class Candidate(BaseModel):
    id: int
    name: str
    score: float


class AutoAssignResult(BaseModel):
    message: str
    ticket: AutoAssignedTicket
    assigned_technician: ScoredTechnician
    assignment_reason: str
    other_candidates: list[Candidate] = Field(description="the other suitable technicians, best first")


class HistoryEntry(BaseModel):
    """One change of a ticket: who, when, and what went from what to what."""

    id: int
    at: datetime
    actor: str = Field(description="`user:<id>`, or `system:<part>` for automatic changes")
    actor_name: str | None
    action: Literal["created", "assigned", "status_changed", "updated"]
    from_status: TicketStatus | None
    to_status: TicketStatus | None
    from_technician_id: int | None
    to_technician_id: int | None
    changes: dict[str, Any] = Field(description='other fields changed: {"field": {"from": …, "to": …}}')
    note: str | None


class Technician(BaseModel):
    """A technician's service profile."""

    id: int
    name: str
    phone: str
    active: bool
    location: str | None
    latitude: float | None
    longitude: float | None
    status: WorkingStatus
    skills: list[str]
    rating: float
    experience_years: int
    current_load: int
    created_at: datetime
    updated_at: datetime
