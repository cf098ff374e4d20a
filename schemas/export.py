"""The device contract as JSON Schema files, so device makers can validate their firmware's payloads.

`python -m schemas.export` rewrites `schemas/jsonschema/`; a test checks the shipped files match.
The schemas say what the models accept, but for what depends on the clock: a reading's `ts` may be
at most 5 minutes in the future and no older than the cloud's bound (PACKFLEET_INGEST_MAX_READING_AGE_DAYS,
30 days by default), and a payload may be at most 256 KiB. tests/test_jsonschema.py runs one corpus
of payloads through both and expects the same verdict for each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.device import Command, CommandAck, Reading, ReadingBatch, Status

JSONSCHEMA_DIR = Path(__file__).parent / "jsonschema"
_ID_BASE = "https://packfleet.dev/schemas/device/v1/"

# file stem → (models a payload may be, what it is)
_PAYLOADS: dict[str, tuple[tuple[type[BaseModel], ...], str]] = {
    "telemetry": ((Reading, ReadingBatch), "batteries/{serial}/telemetry: one reading or a batch"),
    "status": ((Status,), 'batteries/{serial}/status (retained); the will message is {"online": false}'),
    "cmd": ((Command,), "batteries/{serial}/cmd: cloud to device"),
    "cmd-ack": ((CommandAck,), "batteries/{serial}/cmd/ack: device to cloud"),
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """file name → JSON Schema (2020-12) of each payload of the device contract v1."""
    out: dict[str, dict[str, Any]] = {}
    for stem, (models, description) in _PAYLOADS.items():
        if len(models) == 1:
            body = models[0].model_json_schema(mode="validation")
        else:  # one reading, or a batch: an object with `readings` is a batch, as ingest reads it
            defs: dict[str, Any] = {}
            for model in models:
                schema = model.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
                defs.update(schema.pop("$defs", {}))
                defs[model.__name__] = schema
            single, batch = (f"#/$defs/{m.__name__}" for m in models)
            body = {"if": {"required": ["readings"]}, "then": {"$ref": batch}, "else": {"$ref": single}}
            body["$defs"] = defs
        out[f"{stem}.json"] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{_ID_BASE}{stem}.json",
            "title": f"packfleet device contract v1: {stem}",
            "description": description,
            **body,
        }
    return out


def write_json_schemas(directory: Path = JSONSCHEMA_DIR) -> list[Path]:
    """Write every schema as pretty JSON; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_json_schemas():
        print(path)
