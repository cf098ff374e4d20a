"""The MQTT device contract v1 as models: what a device may send and what the cloud sends back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from pydantic import ValidationError

from schemas import topics
from schemas.device import Command, CommandAck, Reading, ReadingBatch, Status

NOW = datetime.now(UTC).replace(microsecond=0)


def reading(**overrides: object) -> dict:
    return {"ts": NOW.isoformat(), "voltage": 48.5, "current": -3.2, "soc": 81, **overrides}


def test_reading_accepts_rfc3339_and_epoch_millis_as_utc() -> None:
    from_text = Reading.model_validate(reading(ts="2026-01-15T16:00:00+05:30"))
    from_millis = Reading.model_validate(reading(ts=1768473000000))
    assert from_text.ts == from_millis.ts == datetime(2026, 1, 15, 10, 30, tzinfo=UTC)


def test_reading_ignores_unknown_keys_and_keeps_optional_fields() -> None:
    parsed = Reading.model_validate(reading(temperature=31.5, lat=12.97, lon=77.59, cell_volts=[3.6]))
    assert (parsed.temperature, parsed.lat, parsed.lon) == (31.5, 12.97, 77.59)


@pytest.mark.parametrize(
    "bad",
    [
        {"voltage": 1000.5},
        {"voltage": -1},
        {"current": 2001},
        {"soc": 100.1},
        {"soc": -0.1},
        {"temperature": 151},
        {"lat": 12.9},
        {"lat": 91, "lon": 0},
        {"ts": "2026-01-15T10:30:00"},
        {"ts": True},
        {"voltage": float("nan")},
    ],
)
def test_reading_rejects_out_of_contract_values(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Reading.model_validate(reading(**bad))


def test_reading_rejects_a_timestamp_over_five_minutes_ahead() -> None:
    ahead = datetime.now(UTC) + timedelta(minutes=5, seconds=30)
    with pytest.raises(ValidationError, match="future"):
        Reading.model_validate(reading(ts=ahead.isoformat()))
    Reading.model_validate(reading(ts=(ahead - timedelta(minutes=1)).isoformat()))


@pytest.mark.parametrize("missing", ["ts", "voltage", "current", "soc"])
def test_reading_requires_its_core_fields(missing: str) -> None:
    payload = reading()
    del payload[missing]
    with pytest.raises(ValidationError):
        Reading.model_validate(payload)


def test_batch_holds_one_to_a_thousand_readings() -> None:
    assert len(ReadingBatch.model_validate({"readings": [reading()] * 1000}).readings) == 1000
    for size in (0, 1001):
        with pytest.raises(ValidationError):
            ReadingBatch.model_validate({"readings": [reading()] * size})


def test_will_message_is_a_valid_status() -> None:
    assert Status.model_validate({"online": False}).online is False


def test_command_round_trips_as_json() -> None:
    command = Command(
        id=uuid4(), action="disable", spec="discharging", issued_at=NOW, expires_at=NOW + timedelta(hours=24)
    )
    again = Command.model_validate_json(command.model_dump_json())
    assert again == command
    assert command.model_dump(mode="json")["issued_at"].endswith("Z")


def test_ack_stage_is_checked() -> None:
    with pytest.raises(ValidationError):
        CommandAck.model_validate({"id": str(uuid4()), "stage": "done"})


def test_topics_parse_and_build() -> None:
    assert topics.parse(topics.telemetry("BAT-01_x")) == ("BAT-01_x", "telemetry")
    assert topics.parse(topics.command_ack("B1")) == ("B1", "cmd/ack")
    assert topics.parse("batteries/a b/telemetry") is None
    assert topics.parse("batteries/" + "x" * 65 + "/status") is None
    assert topics.shared("ingest", topics.TELEMETRY_FILTER) == "$share/ingest/batteries/+/telemetry"
