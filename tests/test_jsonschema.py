"""The shipped JSON Schema files are the contract models, and they judge payloads as the models do."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

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
