"""Structured logging: one JSON object per line, or one readable line per record on a terminal.

JSON goes to stderr when it is not a terminal (containers, CI, log shippers) or when
PACKFLEET_LOG_JSON=true says so. `packfleet up` also writes every record as JSON to a log file under
its data dir and keeps the terminal for warnings, errors and the messages a person waits for (a
login code sent by the development SMS provider), each a line of its own.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
SMS_LOGGER = "packfleet.sms"  # the development SMS provider: its lines are for the person at the terminal
LOG_FILE_BYTES = 20 * 2**20


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


class JsonFormatter(logging.Formatter):
    """Render a record, and any `extra=` fields given to it, as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(_extras(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class HumanFormatter(logging.Formatter):
    """`12:03:04 WARNING ingest.write: database write failed (error=..., messages=3)`; an SMS of the
    development provider as `SMS to +91…: text`, so a login code stands out."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == SMS_LOGGER:
            message = record.getMessage()
            return "SMS" + message[3:] if message.lower().startswith("sms") else f"SMS: {message}"
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = ", ".join(
            f"{k}={v}" for k, v in _extras(record).items() if k not in ("to", "message_id", "provider")
        )
        line = f"{stamp} {record.levelname} {record.name}: {record.getMessage()}"
        if extras:
            line += f" ({extras})"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _ForThePerson(logging.Filter):
    """Warnings and above, and the development SMS provider's messages."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or record.name == SMS_LOGGER


def on_terminal() -> bool:
    return sys.stderr.isatty()


def setup_logging(
    level: str = "INFO",
    *,
    json_lines: bool | None = None,
    log_file: Path | None = None,
    terminal_level: str | None = None,
) -> None:
    """Configure the root logger. `json_lines=None`: JSON unless stderr is a terminal. With
    `terminal_level`, a terminal shows only records at that level and up (and SMS lines), and
    `log_file` keeps every record at `level` as JSON."""
    as_json = (not on_terminal()) if json_lines is None else json_lines
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(JsonFormatter() if as_json else HumanFormatter())
    if terminal_level is not None and on_terminal() and not as_json:
        console.addFilter(_ForThePerson(logging.getLevelName(terminal_level.upper())))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        kept = logging.handlers.RotatingFileHandler(log_file, maxBytes=LOG_FILE_BYTES, backupCount=3)
        kept.setFormatter(JsonFormatter())
        handlers.append(kept)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level.upper())
    for noisy in ("amqtt", "transitions", "uvicorn.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
