"""The shipped JSON Schema files are the contract models, and they judge payloads as the models do."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from control.acks import Ack
from control.inbound import parse_ack
from ingest.parse import ParsedReadings, StatusUpdate, parse
from schemas.device import Command
from schemas.export import JSONSCHEMA_DIR, json_schemas, write_json_schemas

NOW = datetime.now(UTC).replace(microsecond=0)


def test_shipped_files_match_the_models() -> None:
    shipped = {p.name: json.loads(p.read_text()) for p in JSONSCHEMA_DIR.glob("*.json")}
    assert shipped == json_schemas(), "run `python -m schemas.export` and commit schemas/jsonschema/"


def test_export_writes_every_schema(tmp_path: Path) -> None:
    written = write_json_schemas(tmp_path)
    assert sorted(p.name for p in written) == ["cmd-ack.json", "cmd.json", "status.json", "telemetry.json"]
    for path in written:
        Draft202012Validator.check_schema(json.loads(path.read_text()))


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json_schemas()[name])


READING = {"ts": NOW.isoformat(), "voltage": 48.5, "current": -3.2, "soc": 81}


@pytest.mark.parametrize(
    ("payload", "valid"),
    [
        (READING, True),
        ({**READING, "ts": 1768473000000, "lat": 12.9, "lon": 77.6, "unknown": 1}, True),
        ({"readings": [READING, {**READING, "temperature": 31.5}]}, True),
        ({**READING, "soc": 101}, False),
        ({k: v for k, v in READING.items() if k != "voltage"}, False),
        ({**READING, "ts": 1.5}, False),
        ({"readings": []}, False),
        ({"readings": [READING] * 1001}, False),
    ],
)
def test_telemetry_schema(payload: Any, valid: bool) -> None:
    assert _validator("telemetry.json").is_valid(payload) is valid


def test_status_schema_takes_the_will_message() -> None:
    status = _validator("status.json")
    assert status.is_valid({"online": False})
    assert status.is_valid(
        {"online": True, "enabled": True, "spec": "both", "fw": "1.4.2", "ts": 1768473000000}
    )
    assert not status.is_valid({"online": True, "spec": "sideways"})


# --- one corpus, two judges: the JSON Schema handed to firmware makers, and the worker's models ------
#
# Each payload is judged by the shipped schema (with format checks: date-time, uuid) and by what
# ingest and control do with it (ingest.parse for telemetry and status, control's parse_ack for
# acks, the Command model for commands). Every timestamp is recent: the clock-relative rules
# (5 minutes ahead, the oldest accepted age) and the 256 KiB cap are not the schema's, and have tests
# of their own (tests/ingest/test_parse.py).

_UUID = "3f2c9a4e-8b1d-4c6f-9e2a-7d5b1c0f4a21"
_MS = int(NOW.timestamp() * 1000)
_TS = NOW.isoformat().replace("+00:00", "Z")


def _r(**changes: Any) -> dict[str, Any]:
    body = {"ts": _TS, "voltage": 48.5, "current": -3.2, "soc": 81}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def _j(value: Any) -> bytes:
    return json.dumps(value).encode()


CORPUS: list[tuple[str, bytes, bool]] = [
    # telemetry, accepted
    ("telemetry.json", _j(_r()), True),
    ("telemetry.json", _j(_r(voltage=48, soc=100, current=0)), True),  # integers are numbers
    ("telemetry.json", _j(_r(ts=_MS)), True),
    ("telemetry.json", _j(_r(ts=float(_MS))), True),  # 1.7e12: an integer to JSON Schema
    ("telemetry.json", _j(_r(ts=NOW.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat())), True),
    ("telemetry.json", _j(_r(ts=_TS.replace("T", "t").replace("Z", "z"))), True),
    ("telemetry.json", _j(_r(ts=_TS.replace("Z", ".123456789Z"))), True),
    ("telemetry.json", _j(_r(temperature=-40, lat=-90, lon=180, extra={"cells": [3.6]})), True),
    ("telemetry.json", _j(_r(lat=None, lon=None, temperature=None)), True),
    ("telemetry.json", b'{"n\\u00e4me": 1, ' + _j(_r())[1:], True),  # an escape: the slow path
    ("telemetry.json", _j({"readings": [_r(), _r(ts=_MS - 1000, temperature=31.5)]}), True),
    ("telemetry.json", _j({"readings": [_r()], "fw": "1.0"}), True),
    # telemetry, refused: types
    ("telemetry.json", _j(_r(voltage="48.5")), False),
    ("telemetry.json", _j(_r(soc=True)), False),
    ("telemetry.json", _j(_r(current=None)), False),
    ("telemetry.json", _j(_r(temperature="31")), False),
    ("telemetry.json", _j(_r(lat="12.9", lon=77.6)), False),
    ("telemetry.json", _j(_r(soc=[81])), False),
    ("telemetry.json", _j(_r(ts=True)), False),
    ("telemetry.json", _j(_r(ts=None)), False),
    ("telemetry.json", _j(_r(ts=_MS + 0.5)), False),
    ("telemetry.json", _j(_r(ts=str(_MS))), False),
    # telemetry, refused: ranges and rules
    ("telemetry.json", _j(_r(soc=100.5)), False),
    ("telemetry.json", _j(_r(voltage=-0.1)), False),
    ("telemetry.json", _j(_r(current=2000.01)), False),
    ("telemetry.json", _j(_r(temperature=150.5)), False),
    ("telemetry.json", b'{"ts": 1, "voltage": 1e400, "current": 0, "soc": 0}', False),
    ("telemetry.json", _j(_r(lat=12.9)), False),
    ("telemetry.json", _j(_r(lat=12.9, lon=None)), False),
    ("telemetry.json", _j(_r(lat=91, lon=0)), False),
    ("telemetry.json", _j(_r(ts=10**16)), False),  # past year 9999
    ("telemetry.json", _j(_r(soc=_DROP)), False),
    # telemetry, refused: timestamps that are not RFC 3339
    ("telemetry.json", _j(_r(ts=_TS.replace("T", " "))), False),
    ("telemetry.json", _j(_r(ts=_TS.replace("Z", ""))), False),
    ("telemetry.json", _j(_r(ts=NOW.strftime("%Y%m%dT%H%M%SZ"))), False),
    ("telemetry.json", _j(_r(ts=NOW.strftime("%G-W%V-%uT%H:%M:%SZ"))), False),
    ("telemetry.json", _j(_r(ts=NOW.strftime("%Y-%m-%dT24:00:00Z"))), False),
    ("telemetry.json", _j(_r(ts="2026-02-30T10:00:00Z")), False),
    ("telemetry.json", _j(_r(ts="now")), False),
    # telemetry, refused: shapes
    ("telemetry.json", _j([_r()]), False),
    ("telemetry.json", _j("text"), False),
    ("telemetry.json", b"null", False),
    ("telemetry.json", b"{}", False),
    ("telemetry.json", b'{"ts": 1, "voltage": NaN, "current": 0, "soc": 0}', False),  # not JSON
    ("telemetry.json", b"{not json", False),
    ("telemetry.json", b"\xff\xfe{}", False),
    ("telemetry.json", _j({"readings": []}), False),
    ("telemetry.json", _j({"readings": "no"}), False),
    ("telemetry.json", _j({"readings": [_r()] * 1001}), False),
    ("telemetry.json", _j({"readings": [_r(), _r(voltage="1")]}), False),  # the good one is kept, though
    ("telemetry.json", _j({"readings": [_r(), 5]}), False),
    ("telemetry.json", _j({**_r(), "readings": 5}), False),  # `readings` makes it a batch
    # status
    ("status.json", _j({"online": False}), True),
    (
        "status.json",
        _j({"online": True, "enabled": False, "spec": "charging", "fw": "x" * 64, "ts": _MS}),
        True,
    ),
    ("status.json", _j({"online": True, "enabled": None, "spec": None, "fw": None, "ts": None}), True),
    ("status.json", _j({"online": "yes"}), False),
    ("status.json", _j({"online": 1}), False),
    ("status.json", _j({"online": True, "enabled": "true"}), False),
    ("status.json", _j({"online": True, "enabled": 0}), False),
    ("status.json", _j({"online": True, "spec": "sideways"}), False),
    ("status.json", _j({"online": True, "fw": "x" * 65}), False),
    ("status.json", _j({"online": True, "fw": 142}), False),
    ("status.json", _j({"online": True, "fw": "1.0\u0000"}), False),
    ("status.json", b'{"online": true, "fw": "\\ud800"}', False),  # a lone surrogate is not text
    ("status.json", _j({"online": True, "ts": "yesterday"}), False),
    ("status.json", _j({"enabled": True}), False),
    ("status.json", _j([True]), False),
    # command acks
    ("cmd-ack.json", _j({"id": _UUID, "stage": "received"}), True),
    ("cmd-ack.json", _j({"id": _UUID.upper(), "stage": "applied", "enabled": False, "ts": _TS}), True),
    ("cmd-ack.json", _j({"id": _UUID, "stage": "rejected", "enabled": None, "error": "e" * 1000}), True),
    ("cmd-ack.json", _j({"id": _UUID, "stage": "done"}), False),
    ("cmd-ack.json", _j({"id": _UUID, "stage": "applied", "enabled": "false"}), False),
    ("cmd-ack.json", _j({"id": _UUID, "stage": "applied", "enabled": 0}), False),
    ("cmd-ack.json", _j({"id": _UUID, "stage": "rejected", "error": "e" * 1001}), False),
    ("cmd-ack.json", _j({"id": _UUID, "stage": "rejected", "error": 5}), False),
    ("cmd-ack.json", _j({"id": _UUID.replace("-", ""), "stage": "received"}), False),
    ("cmd-ack.json", _j({"id": "{" + _UUID + "}", "stage": "received"}), False),
    ("cmd-ack.json", _j({"id": f"urn:uuid:{_UUID}", "stage": "received"}), False),
    ("cmd-ack.json", _j({"id": 12345, "stage": "received"}), False),
    ("cmd-ack.json", _j({"id": _UUID}), False),
    # commands (what a device receives)
    ("cmd.json", _j({"id": _UUID, "action": "disable", "issued_at": _TS, "expires_at": _MS}), True),
    (
        "cmd.json",
        _j({"id": _UUID, "action": "enable", "spec": "discharging", "issued_at": _MS, "expires_at": _MS}),
        True,
    ),
    ("cmd.json", _j({"id": _UUID, "action": "explode", "issued_at": _TS, "expires_at": _TS}), False),
    (
        "cmd.json",
        _j({"id": _UUID, "action": "enable", "spec": "sideways", "issued_at": _TS, "expires_at": _TS}),
        False,
    ),
    ("cmd.json", _j({"id": _UUID, "action": "enable", "issued_at": _TS}), False),
    ("cmd.json", _j({"id": _UUID, "action": "enable", "issued_at": "1 Jan", "expires_at": _TS}), False),
]


def _strict_json(payload: bytes) -> tuple[bool, Any]:
    """(True, document) when the payload is JSON (RFC 8259: no NaN, text of Unicode scalar values)."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        document = json.loads(payload.decode("utf-8"), parse_constant=refuse)
        json.dumps(document, ensure_ascii=False).encode("utf-8")  # a lone surrogate cannot be encoded
    except (UnicodeError, ValueError):
        return False, None
    return True, document


def _schema_accepts(name: str, payload: bytes) -> bool:
    is_json, document = _strict_json(payload)
    validator = Draft202012Validator(json_schemas()[name], format_checker=Draft202012Validator.FORMAT_CHECKER)
    return is_json and validator.is_valid(document)


def _models_accept(name: str, payload: bytes) -> bool:
    if name == "telemetry.json":
        parsed = parse("batteries/BAT-1/telemetry", payload)
        return isinstance(parsed, ParsedReadings) and parsed.rejected is None
    if name == "status.json":
        return isinstance(parse("batteries/BAT-1/status", payload), StatusUpdate)
    if name == "cmd-ack.json":
        return isinstance(parse_ack("batteries/BAT-1/cmd/ack", "BAT-1", payload, NOW), Ack)
    try:  # a device reads commands as JSON text, or from its own JSON parser's objects
        Command.model_validate_json(payload)
        Command.model_validate(json.loads(payload))
    except (ValidationError, ValueError):
        return False
    return True


def test_the_date_time_format_is_checked() -> None:
    # Without rfc3339-validator installed, jsonschema passes every "date-time" string unchecked.
    assert not Draft202012Validator.FORMAT_CHECKER.conforms("not a time", "date-time")


@pytest.mark.parametrize(
    ("name", "payload", "valid"), CORPUS, ids=[f"{n[:-5]}-{i}" for i, (n, _, _) in enumerate(CORPUS)]
)
def test_the_schema_and_the_worker_give_the_same_verdict(name: str, payload: bytes, valid: bool) -> None:
    assert (_schema_accepts(name, payload), _models_accept(name, payload)) == (valid, valid)
