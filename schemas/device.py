"""Payloads of the MQTT device contract v1 (see ARCHITECTURE.md), as pydantic models."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_BATCH_READINGS = 1000
MAX_FUTURE_SKEW = timedelta(minutes=5)

Spec = Literal["charging", "discharging", "both"]
Action = Literal["enable", "disable"]
AckStage = Literal["received", "applied", "rejected"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Epoch milliseconds a datetime can hold (years 1 to 9999), so that the JSON Schema says so too.
MIN_EPOCH_MS = -62_135_596_800_000
MAX_EPOCH_MS = 253_402_300_799_999
# RFC 3339 date-time (section 5.6), as JSON Schema's "date-time" format checks it: `T` and `Z` in
# either case, any number of second fractions, an offset always. Python's fromisoformat takes more
# (a space, no offset, week dates), which the firmware makers' schema would refuse.
_RFC3339 = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-([0-9]{2})[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])"
    r"(?:\.([0-9]+))?(?:[Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))"
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _to_utc(value: Any) -> Any:
    """Accept RFC 3339 strings or integer epoch milliseconds; always yield an aware UTC datetime."""
    if isinstance(value, datetime):  # built in Python (the cloud's own commands)
        if value.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return value.astimezone(UTC)
    try:
        # JSON Schema's "integer" is any number without a fraction, 1.7e12 included; never a boolean.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not MIN_EPOCH_MS <= value <= MAX_EPOCH_MS:
                raise ValueError("timestamp out of range")
            return _EPOCH + timedelta(milliseconds=value)
        if isinstance(value, str):
            return _parse_rfc3339(value)
    except OverflowError as exc:  # pydantic turns only ValueError into a validation error
        raise ValueError("timestamp out of range") from exc
    raise ValueError("timestamp must be an RFC 3339 string or integer epoch milliseconds")


def rfc3339_text(value: Any) -> Any:
    """A string only if it is an RFC 3339 date-time (left to be parsed): an API's query times."""
    if isinstance(value, str) and _RFC3339.fullmatch(value) is None:
        raise ValueError("must be an RFC 3339 date-time (2024-01-15T10:30:00Z or with a UTC offset)")
    return value


def _parse_rfc3339(text: str) -> datetime:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("timestamp must be RFC 3339 (2024-01-15T10:30:00Z or with a UTC offset)")
    try:
        return datetime.fromisoformat(text).astimezone(UTC)  # in C: the common case costs 0.3 µs
    except ValueError:
        pass  # a lower-case t or z: read the parts (datetime refuses a day the month lacks)
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    micros = int((match[7] or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if match[8] is not None:
        offset = timedelta(hours=int(match[9]), minutes=int(match[10]))
        offset = -offset if match[8] == "-" else offset
    local = datetime(year, month, day, hour, minute, second, micros, tzinfo=timezone(offset))
    return local.astimezone(UTC)


def _to_uuid(value: Any) -> Any:
    """A UUID in its canonical 8-4-4-4-12 form (pydantic alone also takes 32 bare hex digits)."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str) and _UUID.fullmatch(value):
        return UUID(value)
    raise ValueError("must be a UUID in the form 8-4-4-4-12 hex digits")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[
    datetime,
    BeforeValidator(_to_utc),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time", "description": "RFC 3339 with a UTC offset"},
                {
                    "type": "integer",
                    "minimum": MIN_EPOCH_MS,
                    "maximum": MAX_EPOCH_MS,
                    "description": "epoch milliseconds",
                },
            ]
        }
    ),
]

CommandId = Annotated[
    UUID,
    BeforeValidator(_to_uuid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": f"^{_UUID.pattern}$"}),
]


class _Payload(BaseModel):
    # Unknown keys are ignored: devices may send more than the contract names. Strict: a number is a
    # number, not "48.5", and a boolean is true or false, not 1 or "yes" (as the JSON Schema says).
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class Reading(_Payload):
    """One telemetry reading."""

    # lat and lon come together or not at all (null is not there); JSON Schema can say that too.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"lat": {"type": "null"}, "lon": {"type": "null"}}},
                {
                    "required": ["lat", "lon"],
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                },
            ]
        }
    )

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
    fw: str | None = Field(default=None, max_length=64, pattern=r"^[^\x00]*$")  # PostgreSQL text: no NUL
    ts: Timestamp | None = None


class Command(_Payload):
    """Cloud → device: switch charging and/or discharging on or off."""

    id: CommandId
    action: Action
    spec: Spec = "both"
    issued_at: Timestamp
    expires_at: Timestamp


class CommandAck(_Payload):
    """Device → cloud: a stage of a command's execution."""

    id: CommandId
    stage: AckStage
    enabled: bool | None = None
    error: str | None = Field(default=None, max_length=1000)
    ts: Timestamp | None = None
