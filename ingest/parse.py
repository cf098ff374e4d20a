"""Turn one MQTT message (topic + bytes) into readings, a status update or a dead letter.

Pure: no broker, no database, no clock other than the time bounds of a reading: the contract's own
"not in the future" and the cloud's "not older than `max_age`" (a BMS whose clock reset says 1970).
`parse` never raises; anything it cannot accept comes back as a `DeadLetter` with a reason.

Validation is the contract's pydantic models themselves (schemas.device), so ingest and the
contract cannot drift apart. Measured on this machine, `Reading.model_validate_json` (4.7 µs a
message on a quiet core) costs about what `json.loads` alone does, and a hand-written
`json.loads` plus range checks was slower still; bench/ingest.py prints parse() against
`json.loads` on every run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError

from schemas import topics
from schemas.device import MAX_BATCH_READINGS, MAX_PAYLOAD_BYTES, Reading, Status

DEAD_LETTER_PAYLOAD_BYTES: Final = 64 * 1024
# Of a payload refused for its size only a prefix is kept: enough to see what it was, and a device
# sending megabytes cannot fill the dead-letter table (or the buffer) with them.
TOO_LARGE_PAYLOAD_BYTES: Final = 1024

# Dead-letter reasons: short, stable labels (they are metric label values too).
TOO_LARGE: Final = "too_large"
NOT_UTF8: Final = "not_utf8"
INVALID_JSON: Final = "invalid_json"
NOT_AN_OBJECT: Final = "not_an_object"
MISSING_FIELD: Final = "missing_field"
INVALID_FIELD: Final = "invalid_field"
OUT_OF_RANGE: Final = "out_of_range"
FUTURE_TS: Final = "future_ts"
OLD_TS: Final = "old_ts"
BAD_BATCH: Final = "bad_batch"
BAD_TOPIC: Final = "bad_topic"
UNKNOWN_BATTERY: Final = "unknown_battery"  # decided by the writer, which knows the fleet
DELETED_BATTERY: Final = "deleted_battery"
DB_REJECTED: Final = "db_rejected"
REASONS: Final = (
    TOO_LARGE,
    NOT_UTF8,
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    INVALID_FIELD,
    OUT_OF_RANGE,
    FUTURE_TS,
    OLD_TS,
    BAD_BATCH,
    BAD_TOPIC,
    UNKNOWN_BATTERY,
    DELETED_BATTERY,
    DB_REJECTED,
)

_RANGE_ERRORS = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}
)

# ts, voltage, current, soc, temperature, lat, lon: the order of the telemetry columns.
Row = tuple[datetime, float, float, float, float | None, float | None, float | None]


# Not frozen: a frozen dataclass costs a microsecond more to build, per message. Treat as immutable.
@dataclass(slots=True)
class DeadLetter:
    """A message that will never become valid by retrying: kept, counted and acknowledged."""

    topic: str
    reason: str
    detail: str
    payload: bytes  # the first 64 KiB (1 KiB of one refused for its size)
    payload_size: int


@dataclass(slots=True)
class ParsedReadings:
    """Valid readings of one telemetry message; `rejected` holds the invalid part of a batch."""

    serial: str
    rows: tuple[Row, ...]
    rejected: DeadLetter | None = None


@dataclass(slots=True)
class StatusUpdate:
    """A device's status: its will message is just `online=False`."""

    serial: str
    online: bool
    enabled: bool | None
    spec: str | None
    firmware: str | None
    ts: datetime | None


Parsed = ParsedReadings | StatusUpdate | DeadLetter


def dead_letter(topic: str, payload: bytes, reason: str, detail: str) -> DeadLetter:
    """A dead letter whose text columns PostgreSQL will take whatever the message held."""
    kept = TOO_LARGE_PAYLOAD_BYTES if reason == TOO_LARGE else DEAD_LETTER_PAYLOAD_BYTES
    return DeadLetter(_storable(topic), reason, _storable(detail[:2000]), payload[:kept], len(payload))


def _storable(text: str) -> str:
    # PostgreSQL text holds neither NUL nor lone surrogates (which JSON `\ud800` escapes can make).
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


DEFAULT_MAX_AGE: Final = timedelta(days=30)


def parse(topic: str, payload: bytes, *, max_age: timedelta = DEFAULT_MAX_AGE) -> Parsed:
    """Validate one message against the device contract v1; readings older than `max_age` are refused."""
    try:
        return _parse(topic, payload, datetime.now(UTC) - max_age)
    except Exception as exc:  # a bug here must cost one message, never the worker
        return dead_letter(topic, payload, INVALID_FIELD, f"unexpected {type(exc).__name__}: {exc}")


_routes: dict[str, tuple[str, str] | None] = {}  # topic → (serial, kind): topics repeat per battery
_ROUTES_KEPT: Final = 100_000


def _route(topic: str) -> tuple[str, str] | None:
    try:
        return _routes[topic]
    except KeyError:
        if len(_routes) >= _ROUTES_KEPT:
            _routes.clear()
        route = _routes[topic] = topics.parse(topic)
        return route


def _parse(topic: str, payload: bytes, oldest: datetime) -> Parsed:
    route = _route(topic)
    if route is None or route[1] not in (topics.TELEMETRY, topics.STATUS):
        return dead_letter(topic, payload, BAD_TOPIC, "not batteries/{serial}/telemetry or /status")
    serial, kind = route
    if len(payload) > MAX_PAYLOAD_BYTES:
        return dead_letter(topic, payload, TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return dead_letter(topic, payload, NOT_UTF8, str(exc))
    if kind == topics.STATUS:
        return _status(topic, serial, payload)
    return _telemetry(topic, serial, payload, oldest)


def _telemetry(topic: str, serial: str, payload: bytes, oldest: datetime) -> Parsed:
    # The common case, one reading, takes one pass through the model. An object with a
    # `readings` key is a batch; `\u` escapes could spell that key, so they take the slow path.
    if b'"readings"' not in payload and b"\\u" not in payload:
        try:
            reading = Reading.model_validate_json(payload)
        except ValidationError as exc:
            if exc.errors()[0]["type"] == "json_invalid":
                return dead_letter(topic, payload, INVALID_JSON, _describe(exc))
            return dead_letter(topic, payload, *_classify(exc))
        if reading.ts < oldest:
            return dead_letter(topic, payload, OLD_TS, _too_old(reading, oldest))
        return ParsedReadings(serial, (_row(reading),))
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        return dead_letter(topic, payload, INVALID_JSON, str(exc))
    if not isinstance(document, dict):
        return dead_letter(topic, payload, NOT_AN_OBJECT, f"a JSON {type(document).__name__}")
    if "readings" not in document:
        return _single(topic, serial, payload, document, oldest)
    return _batch(topic, serial, payload, document["readings"], oldest)


def _single(topic: str, serial: str, payload: bytes, document: dict[str, Any], oldest: datetime) -> Parsed:
    try:
        reading = Reading.model_validate(document)
    except ValidationError as exc:
        return dead_letter(topic, payload, *_classify(exc))
    if reading.ts < oldest:
        return dead_letter(topic, payload, OLD_TS, _too_old(reading, oldest))
    return ParsedReadings(serial, (_row(reading),))


def _too_old(reading: Reading, oldest: datetime) -> str:
    return (
        f"ts: {reading.ts.isoformat()} is before {oldest.isoformat(timespec='seconds')}, the oldest accepted"
    )


def _batch(topic: str, serial: str, payload: bytes, readings: Any, oldest: datetime) -> Parsed:
    """Store-and-forward upload: the valid readings are kept, the invalid ones dead-lettered."""
    if not isinstance(readings, list) or not 1 <= len(readings) <= MAX_BATCH_READINGS:
        return dead_letter(
            topic, payload, BAD_BATCH, f"readings must be a list of 1 to {MAX_BATCH_READINGS} readings"
        )
    rows: list[Row] = []
    bad: list[tuple[int, str, str]] = []
    for index, item in enumerate(readings):
        try:
            reading = Reading.model_validate(item)
        except ValidationError as exc:
            bad.append((index, *_classify(exc)))
            continue
        if reading.ts < oldest:  # store-and-forward within the bound is kept
            bad.append((index, OLD_TS, _too_old(reading, oldest)))
        else:
            rows.append(_row(reading))
    if not bad:
        return ParsedReadings(serial, tuple(rows))
    detail = f"{len(bad)} of {len(readings)} readings rejected; " + "; ".join(
        f"readings[{i}]: {d}" for i, _, d in bad[:20]
    )
    rejected = dead_letter(topic, payload, bad[0][1], detail)
    return ParsedReadings(serial, tuple(rows), rejected) if rows else rejected


def _status(topic: str, serial: str, payload: bytes) -> Parsed:
    try:
        status = Status.model_validate_json(payload)
    except ValidationError as exc:
        errors = exc.errors()
        if errors[0]["type"] == "json_invalid":
            return dead_letter(topic, payload, INVALID_JSON, _describe(exc))
        if errors[0]["type"] == "model_type":
            return dead_letter(topic, payload, NOT_AN_OBJECT, _describe(exc))
        return dead_letter(topic, payload, *_classify(exc))
    if status.fw is not None and _storable(status.fw) != status.fw:
        return dead_letter(topic, payload, INVALID_FIELD, "fw: contains NUL or an unpaired surrogate")
    return StatusUpdate(serial, status.online, status.enabled, status.spec, status.fw, status.ts)


def _row(r: Reading) -> Row:
    return (r.ts, r.voltage, r.current, r.soc, r.temperature, r.lat, r.lon)


def _classify(exc: ValidationError) -> tuple[str, str]:
    """A reason label and a short description for a reading the model refused."""
    first = exc.errors(include_url=False)[0]
    kind, message = first["type"], first["msg"]
    if kind == "missing":
        reason = MISSING_FIELD
    elif kind in _RANGE_ERRORS:
        reason = OUT_OF_RANGE
    elif kind == "model_type":
        reason = NOT_AN_OBJECT
    elif kind == "value_error" and "future" in message:
        reason = FUTURE_TS
    else:
        reason = INVALID_FIELD
    return reason, _describe(exc)


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)[:5]
    )
