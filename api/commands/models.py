"""Request and response bodies of the command endpoints (battery control, battery-pack enable, bulk)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.batteries.models import Battery, BatteryStatus, CommandStatus, Serial, Spec
from api.errors import ErrorBody
from api.shapes import Body, Id, Shape, optional_not_null

MAX_TTL_S = 30 * 24 * 3600
MAX_BULK_SERIALS = 10_000
# A roll-out sends at least one command every 100 s, and at most 10,000 a second (the configured
# rate caps it further); a slower one would not reach its last battery before the commands expire.
MIN_RATE_PER_S = 0.01
MAX_RATE_PER_S = 10_000.0

Reason = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]*$")]
TtlSeconds = Annotated[
    int,
    Field(
        ge=1, le=MAX_TTL_S, description="seconds until the command expires unapplied (default: the setting)"
    ),
]

ControlAction = Literal["active", "activate", "inactive", "deactivate", "maintenance"]

# The spec's battery actions → (device action, battery status).
ACTIONS: dict[str, tuple[Literal["enable", "disable"], Literal["active", "inactive", "maintenance"]]] = {
    "active": ("enable", "active"),
    "activate": ("enable", "active"),
    "inactive": ("disable", "inactive"),
    "deactivate": ("disable", "inactive"),
    "maintenance": ("disable", "maintenance"),
}


class ControlRequest(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"action": "inactive"}]})

    action: ControlAction
    reason: Reason | None = None
    expires_in_seconds: TtlSeconds | None = None


class BatteryPackEnable(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "operation_type": "enable",
                    "operation_specifications": "discharging",
                    "status_label": "In Warehouse",
                }
            ]
        },
    )

    operation_type: Literal["enable", "disable"]
    operation_specifications: Spec = "both"
    status_label: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]*$")] | None = None
    reason: Reason | None = None
    expires_in_seconds: TtlSeconds | None = None


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "sent by mistake"}]})

    reason: Reason | None = None


class BulkFilter(Body):
    """Which batteries: all that match every given field (at least one). A field is given or left
    out, never null: a filter of nulls would match the whole fleet, which no one means."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=optional_not_null(minProperties=1))

    dealer_id: Id = None  # type: ignore[assignment]
    status: BatteryStatus = Field(default=None, description="the status the device confirmed")
    desired_status: BatteryStatus = Field(default=None, description="the status asked for")
    online: bool = None  # type: ignore[assignment]
    reported_enabled: bool = Field(
        default=None,
        description="true: the device confirmed both switches on; false: it confirmed at least one off",
    )
    in_sync: bool = Field(
        default=None, description="whether the device confirmed what was asked (false also: never reported)"
    )
    overdue_days: int = Field(
        default=None,
        ge=1,
        le=3650,
        description="batteries whose loan has an EMI unpaid this many days past due",
    )


class BulkRequest(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=optional_not_null(
            examples=[
                {
                    "action": "disable",
                    "serials": ["BAT001", "BAT002"],
                    "reason": "EMI overdue",
                    "rate_per_s": 50,
                }
            ],
            # serials or filter, exactly one of them (neither is null: left out, or given)
            oneOf=[{"required": ["serials"]}, {"required": ["filter"]}],
        ),
    )

    action: Literal["active", "activate", "inactive", "deactivate", "maintenance", "enable", "disable"]
    spec: Spec = "both"
    serials: list[Serial] = Field(
        default=None, min_length=1, max_length=MAX_BULK_SERIALS, description="give serials or filter"
    )
    filter: BulkFilter = Field(default=None, description="give serials or filter")
    reason: Reason
    expires_in_seconds: TtlSeconds | None = None
    rate_per_s: float | None = Field(
        default=None,
        ge=MIN_RATE_PER_S,
        le=MAX_RATE_PER_S,
        allow_inf_nan=False,
        description="commands per second (at most the configured rate); the whole roll-out must end "
        "before its commands expire",
    )

    @model_validator(mode="after")
    def _one_selector(self) -> BulkRequest:
        if (self.serials is None) == (self.filter is None):
            raise ValueError("give either serials or filter")
        return self


# --- responses ------------------------------------------------------------------------------------


class Command(Shape):
    """A command with its lifecycle timestamps, and who asked for it and why."""

    id: UUID
    serial_number: str
    action: Literal["enable", "disable"]
    spec: Spec
    status: CommandStatus
    reason: str = Field(examples=["EMI overdue"])
    requested_by: int | None = Field(description="the user who asked (null: the system)")
    source: str = Field(examples=["api"])
    battery_status: BatteryStatus | None
    status_label: str | None
    attempts: int
    error: str | None
    device_enabled: bool | None = Field(description="what the device reported in its final acknowledgement")
    cancel_reason: str | None
    cancelled_by: str | None
    superseded_by: UUID | None
    bulk_id: UUID | None
    created_at: datetime
    sent_at: datetime | None
    last_sent_at: datetime | None
    delivered_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime
    next_attempt_at: datetime | None


class ControlledBattery(Battery):
    """The battery after a control request: `desired_status` as asked, `status` as confirmed until
    the device applies `command`."""

    command: Command


class CommandEvent(Shape):
    status: str
    at: datetime
    actor: str = Field(examples=["control"])
    detail: str | None


class CommandDetail(Command):
    """A command and its audit trail: every transition, who made it and why."""

    events: list[CommandEvent]


class PackEnabled(Shape):
    """The spec's answer: when the command was issued and when the device applied it."""

    issuedAt: datetime
    enabledAt: datetime


class PackCommandPending(Shape):
    """The device has not applied the command within the wait: follow it by its id."""

    id: UUID
    status: Literal["queued", "sent", "delivered"]
    issuedAt: datetime
    command: Command


class CommandOutcome(Shape):
    command: Command


class CommandRefused(ErrorBody):
    """The device did not apply the command (rejected, contradicted or expired)."""

    details: CommandOutcome  # type: ignore[assignment]


class BulkSummary(Shape):
    queued: int
    sent: int
    delivered: int
    succeeded: int
    failed: int
    expired: int
    cancelled: int


class BulkStatus(Shape):
    """A bulk roll-out: what was asked, and how many of its commands reached each state."""

    id: UUID
    action: Literal["enable", "disable"]
    spec: Spec
    battery_status: BatteryStatus | None
    reason: str
    requested_by: int | None
    selector: dict[str, Any] = Field(description="the serials or the filter, as asked")
    total: int
    rate_per_s: float
    created_at: datetime
    summary: BulkSummary
    done: bool


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


_TIMES = (
    "created_at",
    "sent_at",
    "last_sent_at",
    "delivered_at",
    "finished_at",
    "expires_at",
    "next_attempt_at",
)


def command_body(row: dict[str, Any]) -> dict[str, Any]:
    """A command with its lifecycle timestamps and who asked and why."""
    body = {
        "id": str(row["id"]),
        "serial_number": row["serial_number"],
        "action": row["action"],
        "spec": row["spec"],
        "status": row["status"],
        "reason": row["reason"],
        "requested_by": row["requested_by"],
        "source": row["source"],
        "battery_status": row["battery_status"],
        "status_label": row["status_label"],
        "attempts": row["attempts"],
        "error": row["error"],
        "device_enabled": row["device_enabled"],
        "cancel_reason": row["cancel_reason"],
        "cancelled_by": row["cancelled_by"],
        "superseded_by": None if row["superseded_by"] is None else str(row["superseded_by"]),
        "bulk_id": None if row["bulk_id"] is None else str(row["bulk_id"]),
    }
    body.update({name: iso(row[name]) for name in _TIMES})
    return body


def event_body(row: dict[str, Any]) -> dict[str, Any]:
    return {"status": row["status"], "at": iso(row["at"]), "actor": row["actor"], "detail": row["detail"]}


def bulk_body(row: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    states = ("queued", "sent", "delivered", "succeeded", "failed", "expired", "cancelled")
    return {
        "id": str(row["id"]),
        "action": row["action"],
        "spec": row["spec"],
        "battery_status": row["battery_status"],
        "reason": row["reason"],
        "requested_by": row["requested_by"],
        "selector": row["selector"],
        "total": row["total"],
        "rate_per_s": row["rate_per_s"],
        "created_at": iso(row["created_at"]),
        "summary": {state: counts.get(state, 0) for state in states},
        "done": sum(counts.get(s, 0) for s in ("succeeded", "failed", "expired", "cancelled"))
        == row["total"],
    }
