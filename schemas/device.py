"""Payloads of the MQTT device contract v1 (see ARCHITECTURE.md), as pydantic models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_BATCH_READINGS = 1000
MAX_FUTURE_SKEW = timedelta(minutes=5)

Spec = Literal["charging", "discharging", "both"]
Action = Literal["enable", "disable"]
AckStage = Literal["received", "applied", "rejected"]


def _to_utc(value: Any) -> Any:
    """Accept RFC 3339 strings or integer epoch milliseconds; always yield an aware UTC datetime."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be an RFC 3339 string or epoch milliseconds")
    try:
        if isinstance(value, int):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                raise ValueError("timestamp must carry a UTC offset")
            return parsed.astimezone(UTC)
    except (OverflowError, OSError) as exc:  # pydantic turns only ValueError into a validation error
        raise ValueError("timestamp out of range") from exc
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return value.astimezone(UTC)
    raise ValueError("timestamp must be an RFC 3339 string or epoch milliseconds")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[
    datetime,
    BeforeValidator(_to_utc),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
]


class _Payload(BaseModel):
    # Unknown keys are ignored: devices may send more than the contract names.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Reading(_Payload):
    """One telemetry reading."""

    ts: Timestamp
    voltage: float = Field(ge=0, le=1000, allow_inf_nan=False, description="volts")
    current: float = Field(
        ge=-2000, le=2000, allow_inf_nan=False, description="amperes, + discharging, - charging"
    )
    soc: float = Field(ge=0, le=100, allow_inf_nan=False, description="state of charge, percent")
    temperature: float | None = Field(default=None, ge=-40, le=150, allow_inf_nan=False)
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> Reading:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon come together or not at all")
        if self.ts > datetime.now(UTC) + MAX_FUTURE_SKEW:
            raise ValueError("ts is more than 5 minutes in the future")
        return self


class ReadingBatch(_Payload):
    """Store-and-forward upload after an outage: up to 1000 readings, in any order."""

    readings: list[Reading] = Field(min_length=1, max_length=MAX_BATCH_READINGS)


class Status(_Payload):
    """Retained device status; the will message is just `{"online": false}`."""

    online: bool
    enabled: bool | None = None
    spec: Spec | None = None
    fw: str | None = Field(default=None, max_length=64)
    ts: Timestamp | None = None


class Command(_Payload):
    """Cloud → device: switch charging and/or discharging on or off."""

    id: UUID
    action: Action
    spec: Spec = "both"
    issued_at: Timestamp
    expires_at: Timestamp


class CommandAck(_Payload):
    """Device → cloud: a stage of a command's execution."""

    id: UUID
    stage: AckStage
    enabled: bool | None = None
    error: str | None = Field(default=None, max_length=1000)
    ts: Timestamp | None = None
