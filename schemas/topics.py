"""MQTT topics of the device contract v1: `batteries/{serial}/...`."""

from __future__ import annotations

import re
from typing import Final

SERIAL_PATTERN: Final = r"[A-Za-z0-9_-]{1,64}"
_SERIAL = re.compile(SERIAL_PATTERN)

TELEMETRY: Final = "telemetry"
STATUS: Final = "status"
COMMAND: Final = "cmd"
COMMAND_ACK: Final = "cmd/ack"

TELEMETRY_FILTER: Final = "batteries/+/telemetry"
STATUS_FILTER: Final = "batteries/+/status"
COMMAND_FILTER: Final = "batteries/+/cmd"
COMMAND_ACK_FILTER: Final = "batteries/+/cmd/ack"

_TOPIC = re.compile(rf"^batteries/({SERIAL_PATTERN})/(telemetry|status|cmd|cmd/ack)$")


def is_valid_serial(serial: str) -> bool:
    return _SERIAL.fullmatch(serial) is not None


def telemetry(serial: str) -> str:
    return f"batteries/{serial}/telemetry"


def status(serial: str) -> str:
    return f"batteries/{serial}/status"


def command(serial: str) -> str:
    return f"batteries/{serial}/cmd"


def command_ack(serial: str) -> str:
    return f"batteries/{serial}/cmd/ack"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT v5 shared subscription, so the group's members split the stream."""
    return f"$share/{group}/{topic_filter}"


def parse(topic: str) -> tuple[str, str] | None:
    """Split `batteries/{serial}/{kind}` into (serial, kind); None for any other topic."""
    match = _TOPIC.match(topic)
    return (match[1], match[2]) if match else None
