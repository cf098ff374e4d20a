"""A calendar date the API accepts: bounded, so that no date arithmetic on it leaves Python's or
PostgreSQL's range (a report window, a schedule from a disbursement date, a year's months), and
written as the document says (`YYYY-MM-DD`): pydantic alone also takes `0` or `"0"` (seconds since
1970) and a datetime string at midnight, which the document calls invalid."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

EARLIEST = date(1970, 1, 1)
LATEST = date(2200, 12, 31)
_WRITTEN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _calendar_date(value: Any) -> Any:
    """A date, or its ISO 8601 text; anything else (a number, a timestamp) is refused."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _WRITTEN.fullmatch(value):
        return value
    raise ValueError("a calendar date is written YYYY-MM-DD")


CalendarDate = Annotated[
    date,
    BeforeValidator(_calendar_date),
    Field(ge=EARLIEST, le=LATEST),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "pattern": r"^(19[7-9][0-9]|2[01][0-9]{2}|2200)-[0-9]{2}-[0-9]{2}$",
            "description": f"a date from {EARLIEST} to {LATEST}",
        }
    ),
]
