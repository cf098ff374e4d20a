"""Battery-pack fields: the spec's names, their columns, row validation and the response shape.

One validator serves the single JSON body, JSON arrays and CSV rows, so all three accept and refuse
the same things and report errors by the spec's field names.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.topics import SERIAL_PATTERN

_TAG = re.compile(f"^{SERIAL_PATTERN}$")
MAX_TEXT = 200

# spec name -> column, for the top-level text fields
TOP_TEXT = {
    "company": "company",
    "status_label": "status_label",
    "model": "model",
    "manufacturer_name": "manufacturer_name",
    "location": "location",
}
# spec name inside `battery_pack` (also a flat CSV column) -> column
PACK_TEXT = {
    "battery_cell_chemistry": "cell_chemistry",
    "battery_pack_nominal_voltage": "nominal_voltage",
    "battery_pack_nominal_charge_capacity": "nominal_capacity",
    "bms_type": "bms_type",
    "battery_cell_type": "cell_type",
    "battery_pack_casing": "casing",
}
TEXT_COLUMNS = {**TOP_TEXT, **PACK_TEXT}
# every field a row may carry, flat (CSV header names)
FIELDS = ("asset_tag", *TOP_TEXT, "warranty_months", *PACK_TEXT, "health_score", "dealer_id")
# columns written by create / update, in the staging table's order
COLUMNS = (
    "serial_number",
    *TOP_TEXT.values(),
    "warranty_months",
    *PACK_TEXT.values(),
    "health_score",
    "dealer_id",
)

# `sort` allow-list: spec name -> SQL expression (constants only ever reach the SQL text)
SORTS = {
    "id": "b.id",
    "asset_tag": "b.serial_number",
    "company": "b.company",
    "status_label": "b.status_label",
    "model": "b.model",
    "manufacturer_name": "b.manufacturer_name",
    "location": "b.location",
    "warranty_months": "b.warranty_months",
    "health_score": "b.health_score",
    "status": "b.status",
    "owner_name": "c.name",
    "created_at": "b.created_at",
    "updated_at": "b.updated_at",
}


class PackListQuery(BaseModel):
    """The query string of `GET /api/battery_pack` (filters by the spec's names)."""

    limit: int = Field(default=100, ge=1, description="page size, capped at 500")
    offset: int = Field(default=0, ge=0)
    search: str | None = Field(
        default=None, max_length=200, description="asset tag, model, maker, owner, place"
    )
    sort: str = Field(default="id", description=f"one of: {', '.join(SORTS)}")
    order: str = Field(default="asc", description="asc or desc")
    model_name: str | None = None
    manufacturer_name: str | None = None
    owner_name: str | None = None
    location: str | None = None
    status_label: str | None = None
    dealer_id: int | None = Field(default=None, description="admin only")


class AllocateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_category: str = Field(pattern="^(Vehicle|User|Location)$")
    target_individual: str = Field(min_length=1, max_length=MAX_TEXT)
    status_label: str | None = Field(default=None, max_length=MAX_TEXT)


class RowError(Exception):
    """A row that cannot be used; `field` names the offending spec field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def flatten(item: Any) -> dict[str, Any]:
    """A JSON pack (with a nested `battery_pack`) as one flat row of spec names."""
    if not isinstance(item, dict):
        raise RowError("body", "each item must be a JSON object")
    flat = {k: v for k, v in item.items() if k != "battery_pack"}
    specs = item.get("battery_pack")
    if specs is not None:
        if not isinstance(specs, dict):
            raise RowError("battery_pack", "must be an object")
        for key, value in specs.items():
            if key not in PACK_TEXT:
                raise RowError(f"battery_pack.{key}", "unknown field")
            flat[key] = value
    return flat


def clean_row(raw: dict[str, Any], *, require_tag: bool = True, blank_is_null: bool = True) -> dict[str, Any]:
    """Validate a flat row; return {column: value} for the fields present (RowError otherwise)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            value = value.strip()
            if blank_is_null and value == "":
                value = None
        if key == "asset_tag":
            if not isinstance(value, str) or not _TAG.match(value):
                raise RowError("asset_tag", "must be 1-64 letters, digits, '_' or '-'")
            out["serial_number"] = value
        elif key in TEXT_COLUMNS:
            if value is not None and not isinstance(value, str):
                raise RowError(key, "must be a string")
            if value is not None and len(value) > MAX_TEXT:
                raise RowError(key, f"at most {MAX_TEXT} characters")
            if value is not None and "\x00" in value:
                raise RowError(key, "contains a NUL character")
            out[TEXT_COLUMNS[key]] = value
        elif key == "warranty_months":
            out["warranty_months"] = _int(key, value, 0, 1200)
        elif key == "health_score":
            out["health_score"] = _decimal(key, value, 0, 100)
        elif key == "dealer_id":
            out["dealer_id"] = _int(key, value, 1, 2**62)
        else:
            raise RowError(key, "unknown field")
    if require_tag and "serial_number" not in out:
        raise RowError("asset_tag", "is required")
    return out


def _int(field: str, value: Any, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RowError(field, "must be a whole number")
    try:
        number = int(value)
    except ValueError:
        raise RowError(field, "must be a whole number") from None
    if not low <= number <= high:
        raise RowError(field, f"must be between {low} and {high}")
    return number


def _decimal(field: str, value: Any, low: int, high: int) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RowError(field, "must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise RowError(field, "must be a number") from None
    if not number.is_finite() or not low <= number <= high:
        raise RowError(field, f"must be between {low} and {high}")
    return round(number, 2)


def allocation_body(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "target_category": row["target_category"],
        "target_individual": row["target_individual"],
        "status_label": row["status_label"],
        "allocated_by": row["allocated_by"],
        "allocated_at": _iso(row["allocated_at"]),
        "released_at": _iso(row["released_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
