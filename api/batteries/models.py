"""Request and response bodies of the Battery Management API, in the spec's shapes."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, ConfigDict, Field

from api.analytics.models import PredictiveMaintenance
from api.shapes import Body, DecimalString, Id, Number, Shape, decimal_input
from schemas import state
from schemas.topics import SERIAL_PATTERN

BatteryStatus = Literal["active", "inactive", "maintenance"]
Spec = Literal["charging", "discharging", "both"]
CommandStatus = Literal["queued", "sent", "delivered", "succeeded", "failed", "expired", "cancelled"]
Serial = Annotated[str, Field(pattern=f"^{SERIAL_PATTERN}$", examples=["BAT001"])]

# Literal path segments beside `{serial}` (GET /api/batteries/health-report, /api/telemetry/latest, ...):
# a battery registered under one of these names could never be read by its serial.
RESERVED_SERIALS = frozenset({"health-report", "latest", "positions", "fleet"})


def _not_reserved(serial: str) -> str:
    if serial in RESERVED_SERIALS:
        raise ValueError(f"{serial!r} is a reserved word of the API's paths")
    return serial


NewSerial = Annotated[Serial, AfterValidator(_not_reserved)]  # a serial being registered


def _two_places(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# A health score a client sends: 0-100, kept to two decimal places (rounded).
HealthScore = Annotated[
    Decimal,
    Field(ge=0, le=100, allow_inf_nan=False),
    *decimal_input({"minimum": 0, "maximum": 100}, r"100(\.0+)?|[1-9]?[0-9](\.[0-9]+)?"),
    AfterValidator(_two_places),
]


class BatteryCreate(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"serial_number": "BAT002", "health_score": 100}]}
    )

    serial_number: NewSerial
    health_score: HealthScore = Field(default=Decimal(100), description="0-100, rounded to 2 places")
    dealer_id: Id | None = Field(default=None, description="the dealer the battery is registered to")


class AssignRequest(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"consumer_id": 1}]})

    consumer_id: Id | None = Field(description="the consumer to give the battery to; null takes it back")


class Battery(Shape):
    """The spec's battery object."""

    id: Id
    serial_number: str = Field(examples=["BAT001"])
    status: BatteryStatus = Field(description="as the device confirmed it (README: battery status)")
    desired_status: BatteryStatus = Field(description="as asked for; differs while a command is pending")
    health_score: Number = Field(examples=[95])
    owner_id: int | None = Field(description="the consumer who has the battery")
    created_at: datetime


class BatteryListItem(Battery):
    """A battery in a list: with its consumer's name."""

    consumer_name: str | None = Field(examples=["Ram Kumar"])


class Location(Shape):
    lat: DecimalString = Field(examples=["12.971600"])
    lng: DecimalString = Field(examples=["77.594600"])


class Telemetry(Shape):
    """The battery's latest reading (voltage, current and coordinates as decimal strings)."""

    voltage: DecimalString = Field(examples=["48.50"])
    current: DecimalString = Field(examples=["12.30"])
    soc: Number = Field(examples=[85])
    temperature: Number | None = Field(examples=[31.5])
    location: Location | None
    timestamp: datetime


class DesiredState(Shape):
    enabled: bool
    spec: Spec


class ReportedState(Shape):
    enabled: bool | None = Field(description="null until the device has said")
    spec: Spec | None
    at: datetime | None


class PendingCommand(Shape):
    id: UUID
    action: Literal["enable", "disable"]
    spec: Spec
    status: Literal["queued", "sent", "delivered"]
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    expires_at: datetime
    attempts: int


class ControlState(Shape):
    """Desired versus reported state, so that a device that has not obeyed is visible."""

    desired: DesiredState
    reported: ReportedState
    in_sync: bool
    online: bool | None
    last_seen_at: datetime | None
    firmware: str | None
    pending_command: PendingCommand | None


class BatteryDetail(Shape):
    """The spec's battery details: the battery and its latest telemetry, with its control state."""

    battery: Battery
    telemetry: Telemetry | None = Field(description="null until the battery has reported")
    control: ControlState


class HealthGroup(Shape):
    count: int = Field(examples=[45])
    avg_health: DecimalString = Field(examples=["92.3"])
    min_health: Number = Field(examples=[75])
    max_health: Number = Field(examples=[100])


class FleetTelemetry(Shape):
    """What the latest readings say about the same batteries (beyond the spec)."""

    reporting: int
    online: int
    low_soc: int
    stale_over_1h: int
    avg_soc: Number | None


class HealthReport(Shape):
    """The spec's fleet health report, per battery status."""

    fleet_health: dict[BatteryStatus, HealthGroup]
    total_batteries: int = Field(examples=[50])
    overall_health_score: Number | None = Field(examples=[87.6])
    telemetry: FleetTelemetry
    awaiting_confirmation: int = Field(
        description="batteries whose device has not confirmed the state asked (switch by switch)"
    )
    predictive_maintenance: PredictiveMaintenance = Field(description="as in the battery-health analytics")


class ActivityEntry(Shape):
    """One entry of a battery's activity log: who changed what."""

    id: int
    at: datetime
    actor: str = Field(examples=["user:1"])
    action: str = Field(examples=["assigned"])
    detail: dict[str, Any] | None


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
