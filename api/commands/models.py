"""Request and response bodies of the command endpoints (battery control, battery-pack enable, bulk)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.topics import SERIAL_PATTERN

MAX_TTL_S = 30 * 24 * 3600
MAX_BULK_SERIALS = 10_000

ControlAction = Literal["active", "activate", "inactive", "deactivate", "maintenance"]

# The spec's battery actions → (device action, battery status).
ACTIONS: dict[str, tuple[Literal["enable", "disable"], Literal["active", "inactive", "maintenance"]]] = {
    "active": ("enable", "active"),
    "activate": ("enable", "active"),
    "inactive": ("disable", "inactive"),
    "deactivate": ("disable", "inactive"),
    "maintenance": ("disable", "maintenance"),
}


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: ControlAction
    reason: str | None = Field(default=None, min_length=1, max_length=500)
    expires_in_seconds: int | None = Field(default=None, ge=1, le=MAX_TTL_S)


class BatteryPackEnable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation_type: Literal["enable", "disable"]
    operation_specifications: Literal["charging", "discharging", "both"] = "both"
    status_label: str | None = Field(default=None, min_length=1, max_length=100)
    reason: str | None = Field(default=None, min_length=1, max_length=500)
    expires_in_seconds: int | None = Field(default=None, ge=1, le=MAX_TTL_S)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, min_length=1, max_length=500)


class BulkFilter(BaseModel):
    """Which batteries: all that match every given field."""

    model_config = ConfigDict(extra="forbid")

    dealer_id: int | None = None
    status: Literal["active", "inactive", "maintenance"] | None = Field(
        default=None, description="the status the device confirmed"
    )
    desired_status: Literal["active", "inactive", "maintenance"] | None = Field(
        default=None, description="the status asked for"
    )
    online: bool | None = None
    reported_enabled: bool | None = None
    overdue_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="batteries whose loan has an EMI unpaid this many days past due",
    )


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["active", "activate", "inactive", "deactivate", "maintenance", "enable", "disable"]
    spec: Literal["charging", "discharging", "both"] = "both"
    serials: list[str] | None = Field(default=None, min_length=1, max_length=MAX_BULK_SERIALS)
    filter: BulkFilter | None = None
    reason: str = Field(min_length=1, max_length=500)
    expires_in_seconds: int | None = Field(default=None, ge=1, le=MAX_TTL_S)
    rate_per_s: float | None = Field(default=None, gt=0, description="at most the configured rate")

    @model_validator(mode="after")
    def _one_selector(self) -> BulkRequest:
        if (self.serials is None) == (self.filter is None):
            raise ValueError("give either serials or filter")
        if self.serials is not None:
            import re

            bad = [s for s in self.serials if not re.fullmatch(SERIAL_PATTERN, s)]
            if bad:
                raise ValueError(f"invalid serial numbers: {', '.join(bad[:10])}")
        return self


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
