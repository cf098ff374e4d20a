"""Pieces of the response and request models every domain uses: the strict response base, the
spec's number and decimal-string types, bounded ids, page sizes and filter values."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# The largest id the API documents and accepts: 2**53 - 1, the largest integer a JSON number holds
# exactly in every client (JavaScript's Number.MAX_SAFE_INTEGER; a generated client parsing into a
# double). Well inside a PostgreSQL bigint, so an id up to it that names nothing is a 404; beyond
# it a client could not even say the id it means (2**63 - 1 reads back as 2**63), so it is a 400.
MAX_ID = 2**53 - 1
# How far a list may be paged: past this the database would only scan to return nothing.
MAX_OFFSET = 10_000_000


class Shape(BaseModel):
    """A response body of the contract: exactly these fields, so a stray or missing one fails the
    tests (FastAPI validates every answer against its model) instead of surprising a client."""

    model_config = ConfigDict(extra="forbid")


@cache
def _takes_bool(annotation: Any) -> bool:
    args = get_args(annotation)
    return annotation is bool or any(_takes_bool(a) for a in args)


class Body(BaseModel):
    """A request body. pydantic reads `true` as 1 where a number is asked for (and `false` as 0: a
    longitude of 0.0); the document says a number, so a boolean there is refused like any other
    wrong type."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            if not _takes_bool(cls.model_fields[info.field_name].annotation):
                raise ValueError("Input should be a number or text as documented, not true or false")
        return value


def optional_not_null(**extra: Any) -> Callable[[dict[str, Any]], None]:
    """A model's `json_schema_extra` where a field left out is None but an explicit null is refused
    (its type has no None): the document then shows no `"default": null` that a client (or a
    contract tester) would send back as a value. `extra` is added to the model's schema."""

    def edit(schema: dict[str, Any]) -> None:
        for field in schema.get("properties", {}).values():
            nullable = field.get("type") == "null" or {"type": "null"} in field.get("anyOf", ())
            if "default" in field and field["default"] is None and not nullable:
                del field["default"]
        schema.update(extra)

    return edit


def _number(value: Any) -> Any:
    return int(value) if float(value).is_integer() else float(value)


# A JSON number as the spec writes it: 95 for a whole value, 95.5 otherwise.
Number = Annotated[float, PlainSerializer(_number, return_type=Any), WithJsonSchema({"type": "number"})]
# A decimal written as a string, as the spec shows voltages, coordinates and amounts ("48.50").
DecimalString = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["48.50"])]

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET, description="rows to skip")]


def decimal_input(number: dict[str, Any], text: str) -> tuple[BeforeValidator, WithJsonSchema]:
    """A decimal a client may send as a JSON number or as text (`"1875.00"`, as the answers write
    it), documented as exactly that: pydantic alone documents any string and then refuses most
    (`""`). `text` is the pattern of the accepted strings, range included; a string outside it is
    refused before pydantic's own parsing, so the document and the code take the same strings."""
    written = re.compile(text)

    def check(value: Any) -> Any:
        if isinstance(value, str) and not written.fullmatch(value):
            raise ValueError('not a decimal in the documented range (a number, or text such as "12.50")')
        return value

    schema = {"anyOf": [{"type": "number", **number}, {"type": "string", "pattern": f"^(?:{text})$"}]}
    return BeforeValidator(check), WithJsonSchema(schema, mode="validation")


def blank_is_none(value: Any) -> Any:
    """An empty query value (`?owner_name=`) is no filter, on every list."""
    return None if isinstance(value, str) and not value.strip() else value


class _BlankIsNone:
    """`blank_is_none` before the field's own validation, and in the document: the field's schema
    or a blank string (an enum or an integer filter documented without it took `?kyc_status=`
    while the document said it was invalid)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(blank_is_none, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [handler(schema), {"type": "string", "pattern": r"^\s*$"}]}


Blank = _BlankIsNone()
