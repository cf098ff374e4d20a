"""Request and response bodies of the Battery Management API, in the spec's shapes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas import state
from schemas.topics import SERIAL_PATTERN


class BatteryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial_number: str = Field(pattern=f"^{SERIAL_PATTERN}$")
    health_score: Decimal = Field(default=Decimal(100), ge=0, le=100, decimal_places=2)
    dealer_id: int | None = Field(default=None, description="admin only: the owning dealer")


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consumer_id: int | None = Field(description="the consumer to give the battery to; null takes it back")


def activity_body(row: dict[str, Any]) -> dict[str, Any]:
    """One entry of a battery's activity log."""
    return {
        "id": row["id"],
        "at": _iso(row["at"]),
        "actor": row["actor"],
        "action": row["action"],
        "detail": row["detail"],
    }


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def battery_body(row: dict[str, Any]) -> dict[str, Any]:
    """The spec's battery object: `status` as the device confirmed it, `desired_status` as asked."""
    body = {
        "id": row["id"],
        "serial_number": row["serial_number"],
        "status": row["status"],
        "desired_status": row["desired_status"],
        "health_score": _number(row["health_score"]),
        "owner_id": row["owner_id"],
        "created_at": _iso(row["created_at"]),
    }
    if "consumer_name" in row:
        body["consumer_name"] = row["consumer_name"]
    return body


def telemetry_body(reading: dict[str, Any] | None) -> dict[str, Any] | None:
    """The spec's telemetry object (voltage, current and coordinates as decimal strings)."""
    if reading is None:
        return None
    location = None
    if reading["lat"] is not None:
        location = {"lat": f"{reading['lat']:.6f}", "lng": f"{reading['lon']:.6f}"}
    return {
        "voltage": f"{reading['voltage']:.2f}",
        "current": f"{reading['current']:.2f}",
        "soc": round(reading["soc"], 1),
        "temperature": None if reading["temperature"] is None else round(reading["temperature"], 1),
        "location": location,
        "timestamp": _iso(reading["ts"]),
    }


def control_body(row: dict[str, Any], pending: dict[str, Any] | None) -> dict[str, Any]:
    """Desired versus reported state, so a device that has not obeyed is visible."""
    desired = {"enabled": row["desired_enabled"], "spec": row["desired_spec"]}
    reported = {
        "enabled": row["reported_enabled"],
        "spec": row["reported_spec"],
        "at": _iso(row["reported_at"]),
    }
    return {
        "desired": desired,
        "reported": reported,
        "in_sync": state.in_sync(
            (row["desired_enabled"], row["desired_spec"]), (row["reported_enabled"], row["reported_spec"])
        ),
        "online": row["online"],
        "last_seen_at": _iso(row["last_seen_at"]),
        "firmware": row["firmware"],
        "pending_command": pending,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
