"""The parser alone, no broker: every message becomes readings, a status or a dead letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest.parse import (
    DeadLetter,
    ParsedReadings,
    StatusUpdate,
    parse,
)
from schemas.device import Reading, ReadingBatch, Status

NOW = datetime.now(UTC).replace(microsecond=0)
FUTURE = b"<a reading 6 minutes ahead, made at test time>"
TOPIC = "batteries/BAT-1/telemetry"
STATUS_TOPIC = "batteries/BAT-1/status"


def reading(**overrides: object) -> dict[str, Any]:
    return {"ts": NOW.isoformat(), "voltage": 48.5, "current": -3.25, "soc": 81.0, **overrides}


def encode(value: object) -> bytes:
    return json.dumps(value).encode()


def test_one_reading_becomes_one_row() -> None:
    parsed = parse(TOPIC, encode(reading(temperature=30.5, lat=12.97, lon=77.59, extra={"x": 1})))
    assert parsed == ParsedReadings("BAT-1", ((NOW, 48.5, -3.25, 81.0, 30.5, 12.97, 77.59),))


def test_epoch_millis_and_offsets_are_utc() -> None:
    millis = int(NOW.timestamp() * 1000)
    offset = NOW.astimezone(UTC).replace(tzinfo=None).isoformat() + "+00:00"
    for ts in (millis, offset, NOW.isoformat().replace("+00:00", "Z")):
        parsed = parse(TOPIC, encode(reading(ts=ts)))
        assert isinstance(parsed, ParsedReadings) and parsed.rows[0][0] == NOW


def test_a_batch_keeps_order_and_a_bad_reading_is_dead_lettered_alone() -> None:
    items = [reading(ts=(NOW - timedelta(seconds=s)).isoformat(), soc=s) for s in (3, 1, 2)]
    parsed = parse(TOPIC, encode({"readings": items}))
    assert isinstance(parsed, ParsedReadings) and parsed.rejected is None
    assert [r[3] for r in parsed.rows] == [3, 1, 2]

    mixed = parse(TOPIC, encode({"readings": [items[0], reading(soc=101), reading(voltage="x")]}))
    assert isinstance(mixed, ParsedReadings) and len(mixed.rows) == 1
    assert mixed.rejected is not None and mixed.rejected.reason == "out_of_range"
    assert "readings[1]" in mixed.rejected.detail and "readings[2]" in mixed.rejected.detail


def test_an_escaped_readings_key_is_still_a_batch() -> None:
    payload = b'{"\\u0072eadings": [' + encode(reading()) + b"]}"
    parsed = parse(TOPIC, payload)
    assert isinstance(parsed, ParsedReadings) and len(parsed.rows) == 1


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TOPIC, b"", "invalid_json"),
        (TOPIC, b"{", "invalid_json"),
        (TOPIC, b"\xc3\x28", "not_utf8"),
        (TOPIC, encode("text"), "not_an_object"),
        (TOPIC, encode({"readings": "no"}), "bad_batch"),
        (TOPIC, encode({"readings": [reading()] * 1001}), "bad_batch"),
        (TOPIC, encode({"readings": [reading(soc=-1)]}), "out_of_range"),
        (TOPIC, encode(reading(ts=True)), "invalid_field"),
        (TOPIC, encode(reading(ts=10**20)), "invalid_field"),
        (TOPIC, encode(reading(lat=1.0)), "invalid_field"),
        (TOPIC, encode(reading(current=-2000.5)), "out_of_range"),
        (TOPIC, b'{"ts": 1, "voltage": NaN, "current": 0, "soc": 0}', "out_of_range"),
        (TOPIC, FUTURE, "future_ts"),
        (TOPIC, b"[" * 100_000, "invalid_json"),
        (TOPIC, b"x" * (256 * 1024 + 1), "too_large"),
        ("batteries/BAT-1/cmd/ack", encode({}), "bad_topic"),
        ("batteries/bad serial/telemetry", encode(reading()), "bad_topic"),
        (STATUS_TOPIC, encode({"enabled": True}), "missing_field"),
        (STATUS_TOPIC, encode({"online": True, "spec": "sideways"}), "invalid_field"),
        (STATUS_TOPIC, encode({"online": True, "fw": "1\u0000"}), "invalid_field"),
        (
            STATUS_TOPIC,
            b'{"online": true, "fw": "\\ud800"}',
            "invalid_json",
        ),  # pydantic refuses lone surrogates
        (STATUS_TOPIC, b"null", "not_an_object"),
    ],
)
def test_bad_messages_become_dead_letters_with_a_reason(topic: str, payload: bytes, reason: str) -> None:
    if payload is FUTURE:  # "the future" is measured when the test runs, not when it was collected
        payload = encode(reading(ts=(datetime.now(UTC) + timedelta(minutes=6)).isoformat()))
    parsed = parse(topic, payload)
    assert isinstance(parsed, DeadLetter), parsed
    assert (parsed.reason, parsed.topic, parsed.payload_size) == (reason, topic, len(payload))
    kept = 1024 if reason == "too_large" else 64 * 1024  # of one refused for its size, a prefix only
    assert parsed.payload == payload[:kept] and parsed.detail


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00Z", "1899-12-31T23:59:59+05:30", 0, 86_400_000])
def test_a_reading_from_a_clock_that_reset_is_refused_as_too_old(ts: object) -> None:
    parsed = parse(TOPIC, encode(reading(ts=ts)))
    assert isinstance(parsed, DeadLetter) and parsed.reason == "old_ts" and "oldest accepted" in parsed.detail


def test_readings_older_than_the_bound_are_refused_and_store_and_forward_within_it_is_kept() -> None:
    now = datetime.now(UTC)
    days = [29, 31, 0]
    batch = {"readings": [reading(ts=(now - timedelta(days=d)).isoformat()) for d in days]}
    parsed = parse(TOPIC, encode(batch))
    assert isinstance(parsed, ParsedReadings) and len(parsed.rows) == 2
    assert parsed.rejected is not None and parsed.rejected.reason == "old_ts"
    assert "readings[1]" in parsed.rejected.detail
    single = encode(reading(ts=(now - timedelta(days=2)).isoformat()))
    assert isinstance(parse(TOPIC, single), ParsedReadings)
    assert parse(TOPIC, single, max_age=timedelta(days=1)).reason == "old_ts"  # type: ignore[union-attr]


def test_status_and_will() -> None:
    status = parse(STATUS_TOPIC, encode({"online": True, "enabled": False, "spec": "both", "fw": "1.4.2"}))
    assert status == StatusUpdate("BAT-1", True, False, "both", "1.4.2", None)
    assert parse(STATUS_TOPIC, b'{"online": false}') == StatusUpdate("BAT-1", False, None, None, None, None)


# Property-based: arbitrary input never escapes the dead-letter path.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=20,
)
fields = st.sampled_from(
    ["ts", "voltage", "current", "soc", "temperature", "lat", "lon", "readings", "online"]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**22), max_value=10**22),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2100, max_value=2100),
    st.text(max_size=40),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.integers(min_value=0, max_value=2**42),
)
reading_like = st.dictionaries(fields, scalars, max_size=8)
topics_ = st.sampled_from([TOPIC, STATUS_TOPIC]) | st.text(max_size=80)


def _check(parsed: object, topic: str, payload: bytes) -> None:
    assert isinstance(parsed, ParsedReadings | StatusUpdate | DeadLetter)
    if isinstance(parsed, DeadLetter):
        assert parsed.payload == payload[: 64 * 1024] and parsed.payload_size == len(payload)
        parsed.topic.encode("utf-8")  # storable as PostgreSQL text
        parsed.detail.encode("utf-8")
        assert "\x00" not in parsed.topic + parsed.detail


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics_, payload=st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(topic: str, payload: bytes) -> None:
    _check(parse(topic, payload), topic, payload)


@settings(max_examples=300, deadline=None)
@given(topic=topics_, value=json_values)
def test_arbitrary_json_never_raises(topic: str, value: object) -> None:
    payload = json.dumps(value).encode()
    _check(parse(topic, payload), topic, payload)


def _model_rows(payload: bytes) -> list[tuple[Any, ...]] | None:
    try:
        model = Reading.model_validate_json(payload)
    except ValidationError:
        return None
    return [(model.ts, model.voltage, model.current, model.soc, model.temperature, model.lat, model.lon)]


@settings(max_examples=400, deadline=None)
@given(item=reading_like)
def test_single_readings_agree_with_the_contract_model(item: dict[str, Any]) -> None:
    item.pop("readings", None)
    payload = json.dumps(item).encode()
    parsed = parse(TOPIC, payload)
    expected = _model_rows(payload)
    if expected is None:
        assert isinstance(parsed, DeadLetter)
    else:
        assert isinstance(parsed, ParsedReadings) and list(parsed.rows) == expected


@settings(max_examples=200, deadline=None)
@given(items=st.lists(reading_like, min_size=1, max_size=6))
def test_batches_agree_with_the_contract_models(items: list[dict[str, Any]]) -> None:
    payload = json.dumps({"readings": items}).encode()
    parsed = parse(TOPIC, payload)
    # Each reading stands or falls by the Reading model alone...
    kept = [rows[0] for item in items if (rows := _model_rows(json.dumps(item).encode()))]
    got = list(parsed.rows) if isinstance(parsed, ParsedReadings) else []
    assert got == kept
    # ...and when all are valid, the batch is exactly what ReadingBatch makes of it.
    try:
        batch = ReadingBatch.model_validate_json(payload)
    except ValidationError:
        assert isinstance(parsed, DeadLetter) or parsed.rejected is not None
    else:
        assert isinstance(parsed, ParsedReadings) and parsed.rejected is None
        assert got == [
            (r.ts, r.voltage, r.current, r.soc, r.temperature, r.lat, r.lon) for r in batch.readings
        ]


@settings(max_examples=200, deadline=None)
@given(item=st.dictionaries(st.sampled_from(["online", "enabled", "spec", "fw", "ts"]), scalars, max_size=5))
def test_statuses_agree_with_the_contract_model(item: dict[str, Any]) -> None:
    payload = json.dumps(item).encode()
    parsed = parse(STATUS_TOPIC, payload)
    try:
        status = Status.model_validate_json(payload)
    except ValidationError:
        assert isinstance(parsed, DeadLetter)
        return
    if isinstance(parsed, DeadLetter):  # the one stricter rule: text PostgreSQL can store
        assert parsed.reason == "invalid_field" and status.fw is not None
    else:
        assert parsed == StatusUpdate(
            "BAT-1", status.online, status.enabled, status.spec, status.fw, status.ts
        )
