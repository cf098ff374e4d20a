"""A calendar date the API accepts: bounded, so that no date arithmetic on it leaves Python's or
PostgreSQL's range (a report window, a schedule from a disbursement date, a year's months)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field, WithJsonSchema

EARLIEST = date(1970, 1, 1)
LATEST = date(2200, 12, 31)

CalendarDate = Annotated[
    date,
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
