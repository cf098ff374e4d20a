"""Battery-pack fields: the spec's names and their columns, the request and response models.

One model (`BatteryPackCreate`) validates the single JSON body, each item of a JSON array and each
CSV row (its technical columns nested as in JSON by bulk.parse_csv), so all three accept and refuse
the same things, the OpenAPI document says what that is, and errors name the spec's fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from api.batteries.models import BatteryStatus, HealthScore, NewSerial, Serial
from api.errors import ErrorBody
from api.shapes import Blank, Body, Id, Number, Offset, Shape, optional_not_null

MAX_TEXT = 200
MAX_LIMIT = 500
NO_NUL = r"^[^\x00]*$"

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
SortField = Literal[tuple(SORTS)]  # type: ignore[valid-type]


# A text field of a pack: at most 200 characters (surrounding spaces dropped), no NUL. (Constraints
# only, checked in pydantic's core: a 50,000-row import validates 550,000 of these.)
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT, pattern=NO_NUL)]
# Months of warranty, 0-1200: a number, or digits in a string as the spec writes it ("3").
WarrantyMonths = Annotated[
    int,
    Field(ge=0, le=1200),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 1200},
                {"type": "string", "pattern": r"^(?:[0-9]{1,3}|1[01][0-9]{2}|1200)$"},
            ],
            "description": '0-1200; the spec writes it as a string ("3")',
            "examples": ["3"],
        }
    ),
]


class PackSpecs(BaseModel):
    """The spec's `battery_pack` object: the pack's technical data."""

    model_config = ConfigDict(extra="forbid")

    battery_cell_chemistry: Text | None = Field(default=None, examples=["Li-NMC"])
    battery_pack_nominal_voltage: Text | None = Field(default=None, examples=["48 V"])
    battery_pack_nominal_charge_capacity: Text | None = Field(default=None, examples=["48 Ah"])
    bms_type: Text | None = Field(default=None, examples=["Firmware"])
    battery_cell_type: Text | None = Field(default=None, examples=["Cylindrical"])
    battery_pack_casing: Text | None = Field(default=None, examples=["Plastic"])


SPEC_EXAMPLE: dict[str, Any] = {
    "asset_tag": "IRASUS01",
    "company": "Irasus Technologies Private Limited",
    "status_label": "In Warehouse",
    "model": "Model X",
    "manufacturer_name": "Irasus Technologies Private Limited",
    "location": "Delhi",
    "warranty_months": "3",
    "battery_pack": {
        "battery_cell_chemistry": "Li-NMC",
        "battery_pack_nominal_voltage": "48 V",
        "battery_pack_nominal_charge_capacity": "48 Ah",
        "bms_type": "Firmware",
        "battery_cell_type": "Cylindrical",
        "battery_pack_casing": "Plastic",
    },
}


class _PackFields(Body):
    model_config = ConfigDict(extra="forbid")

    company: Text | None = None
    status_label: Text | None = None
    model: Text | None = None
    manufacturer_name: Text | None = None
    location: Text | None = None
    warranty_months: WarrantyMonths | None = None
    battery_pack: PackSpecs | None = None
    health_score: HealthScore | None = Field(default=None, description="0-100 (100 when not given)")
    dealer_id: Id | None = Field(default=None, description="admin only: the dealer the pack is registered to")


class BatteryPackCreate(_PackFields):
    """A new battery pack (the spec's request body); also one item of a bulk JSON array."""

    model_config = ConfigDict(json_schema_extra={"examples": [SPEC_EXAMPLE]})

    asset_tag: NewSerial = Field(description="the pack's serial number (also its MQTT device id)")


class BatteryPackUpdate(_PackFields):
    """The fields to change (an explicit null clears a field, but for the health score and the
    dealer: a pack always has both); `asset_tag`, if given, must be the pack's."""

    model_config = ConfigDict(json_schema_extra=optional_not_null(examples=[SPEC_EXAMPLE]))

    asset_tag: Serial | None = None
    health_score: HealthScore = Field(default=None, description="0-100; cannot be cleared")
    dealer_id: Id = Field(default=None, description="admin only: the dealer to move the pack to")


class RowError(Exception):
    """A row that cannot be used; `field` names the offending spec field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _error_field(loc: tuple[Any, ...], *, flat: bool) -> str:
    parts = [str(p) for p in loc]
    if flat and parts[:1] == ["battery_pack"] and len(parts) > 1:
        parts = parts[1:]  # a CSV row names the column
    return ".".join(parts) or "body"


_COLUMN_OF = {"asset_tag": "serial_number", **TEXT_COLUMNS}


def columns_of(pack: _PackFields) -> dict[str, Any]:
    """{column: value} of the fields the pack was given (None for an explicit null). Reads the
    model's `__dict__`: this runs once per row of a 50,000-row import."""
    given = pack.__dict__
    out = {_COLUMN_OF.get(k, k): given[k] for k in pack.model_fields_set if k != "battery_pack"}
    specs = given["battery_pack"]
    if specs is not None:
        spec_values = specs.__dict__
        out.update({PACK_TEXT[k]: spec_values[k] for k in specs.model_fields_set})
    if out.get("serial_number", "") is None:
        del out["serial_number"]  # an update that names no asset tag
    return out


def validate_pack(raw: Any, *, csv: bool = False) -> BatteryPackCreate:
    """The pack (RowError naming the first bad field otherwise; a CSV row names the column,
    `bms_type` rather than `battery_pack.bms_type`)."""
    if not isinstance(raw, dict):
        raise RowError("body", "each item must be a JSON object")
    try:
        return BatteryPackCreate.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = next((e for e in errors if e["loc"][:1] == ("asset_tag",)), errors[0])
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        elif first["type"] == "string_pattern_mismatch" and first.get("ctx", {}).get("pattern") == NO_NUL:
            message = "contains a NUL character"
        raise RowError(_error_field(tuple(first["loc"]), flat=csv), message) from None


NUMBER_FIELDS = ("warranty_months", "health_score", "dealer_id")


def blank_to_none(row: dict[str, Any]) -> dict[str, Any]:
    """An empty text in a bulk JSON row is no value, as an empty CSV cell is. A number's field keeps
    its "": the document gives it a number's form, and "" is refused as not one (it was accepted)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, str) and not value.strip() and key not in NUMBER_FIELDS:
            value = None
        elif isinstance(value, dict):
            value = blank_to_none(value)
        out[key] = value
    return out


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class PackListQuery(BaseModel):
    """The query string of `GET /api/battery_pack` (filters by the spec's names; empty is no filter)."""

    limit: int = Field(default=100, ge=1, le=MAX_LIMIT, description="page size")
    offset: Offset = 0
    search: Annotated[str | None, Blank] = Field(
        default=None, max_length=200, description="asset tag, model, maker, owner, place"
    )
    sort: SortField = "id"
    order: Annotated[Literal["asc", "desc"], BeforeValidator(_lower)] = Field(
        default="asc", description="asc or desc (either case)"
    )
    model_name: Annotated[str | None, Blank] = Field(default=None, max_length=MAX_TEXT)
    manufacturer_name: Annotated[str | None, Blank] = Field(default=None, max_length=MAX_TEXT)
    owner_name: Annotated[str | None, Blank] = Field(default=None, max_length=MAX_TEXT)
    location: Annotated[str | None, Blank] = Field(default=None, max_length=MAX_TEXT)
    status_label: Annotated[str | None, Blank] = Field(default=None, max_length=MAX_TEXT)
    dealer_id: Annotated[Id | None, Blank] = Field(default=None, description="admin only")


class AllocateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"target_category": "Vehicle", "target_individual": "IRASUS01", "status_label": "In Vehicle"}
            ]
        },
    )

    target_category: Literal["Vehicle", "User", "Location"]
    target_individual: Annotated[Text, Field(min_length=1)]
    status_label: Text | None = None


class DeleteRequest(BaseModel):
    """The packs to delete: `{"asset_tags": [...]}` (a bare array of tags is accepted too)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"asset_tags": ["IRASUS01", "IRASUS02"]}]}
    )

    asset_tags: list[Serial] = Field(min_length=1, max_length=10_000)


# --- responses ------------------------------------------------------------------------------------


class PackSpecsOut(Shape):
    battery_cell_chemistry: str | None = Field(examples=["Li-NMC"])
    battery_pack_nominal_voltage: str | None = Field(examples=["48 V"])
    battery_pack_nominal_charge_capacity: str | None = Field(examples=["48 Ah"])
    bms_type: str | None = Field(examples=["Firmware"])
    battery_cell_type: str | None = Field(examples=["Cylindrical"])
    battery_pack_casing: str | None = Field(examples=["Plastic"])


class CurrentAllocation(Shape):
    target_category: Literal["Vehicle", "User", "Location"]
    target_individual: str
    status_label: str | None
    allocated_at: datetime


class BatteryPack(Shape):
    """The spec's battery-pack object, with the battery's status, owner and current allocation."""

    id: Id
    asset_tag: str = Field(examples=["IRASUS01"])
    company: str | None = Field(examples=["Irasus Technologies Private Limited"])
    status_label: str | None = Field(examples=["In Warehouse"])
    model: str | None = Field(examples=["Model X"])
    manufacturer_name: str | None = Field(examples=["Irasus Technologies Private Limited"])
    location: str | None = Field(examples=["Delhi"])
    warranty_months: str | None = Field(examples=["3"], description="as the spec writes it")
    battery_pack: PackSpecsOut
    health_score: Number = Field(examples=[100])
    status: BatteryStatus = Field(description="as the device confirmed it")
    desired_status: BatteryStatus = Field(description="as asked for; differs while a command is pending")
    dealer_id: int | None
    owner_id: int | None
    owner_name: str | None
    allocation: CurrentAllocation | None
    created_at: datetime
    updated_at: datetime


class Allocation(Shape):
    id: int
    target_category: Literal["Vehicle", "User", "Location"]
    target_individual: str
    status_label: str | None
    allocated_by: str
    allocated_at: datetime
    released_at: datetime | None


class BatteryPackDetail(BatteryPack):
    """One battery pack with its whole allocation history."""

    allocations: list[Allocation]


class PackDeleted(Shape):
    status: Literal["success"]
    message: str = Field(examples=["Asset deleted successfully"])
    deletedAt: datetime
    asset_tag: str


class PacksDeleted(Shape):
    status: Literal["success"]
    message: str = Field(examples=["Assets deleted successfully"])
    deletedAt: datetime
    asset_tags: list[str]
    count: int


class RowProblem(Shape):
    """Why one row of a bulk request cannot be used (the first data row is row 1)."""

    row: int
    asset_tag: str | None
    field: str = Field(examples=["warranty_months"])
    error: str = Field(examples=["Input should be less than or equal to 1200"])


class _BulkReport(Shape):
    dry_run: bool
    valid: int = Field(description="rows that passed validation")
    rows: int
    failed: int
    errors: list[RowProblem] = Field(description="at most 1,000; `errors_total` counts them all")
    errors_total: int
    seconds: float


class BulkCreateReport(_BulkReport):
    created: int


class BulkUpdateReport(_BulkReport):
    updated: int


class BulkRefusal(ErrorBody):
    """A bulk request refused whole (all or nothing): every bad row in `details`."""

    details: list[RowProblem]  # type: ignore[assignment]
    rows: int
    failed: int
    errors_total: int
    dry_run: bool


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
