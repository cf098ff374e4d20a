"""Every number a client sends has a documented range; the rest is a 400 in the spec's body, never a 500."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.shapes import MAX_ID
from tests import factories
from tests.api.conftest import World, bearer
from tests.api.contract import component, document, operation, request_example


@pytest.mark.parametrize("rate", [5e-324, 1e-12, 1e-9, 0, -1, 1e308, "NaN", "Infinity"])
def test_bulk_roll_out_rates_out_of_range_are_400(client: TestClient, world: World, rate: object) -> None:
    second = factories.battery(world.conn, dealer_id=world.dealer_a["id"])
    body = {
        "action": "disable",
        "serials": [world.battery_a["serial_number"], second["serial_number"]],
        "reason": "bounds",
        "rate_per_s": rate,
    }
    answer = client.post("/api/commands/bulk", json=body, headers=bearer(world.admin))
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "VALIDATION_ERROR" and "rate_per_s" in answer.json()["error"]


def test_a_slow_roll_out_that_outlives_its_commands_is_400(client: TestClient, world: World) -> None:
    serials = [
        factories.battery(world.conn, dealer_id=world.dealer_a["id"])["serial_number"] for _ in range(3)
    ]
    body = {
        "action": "disable",
        "serials": serials,
        "reason": "slow",
        "rate_per_s": 0.01,
        "expires_in_seconds": 60,
    }
    answer = client.post("/api/commands/bulk", json=body, headers=bearer(world.admin))
    assert answer.status_code == 400, answer.text
    assert "expires_in_seconds" in answer.text


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/battery_pack", "owner_name"),
        ("/api/battery_pack", "model_name"),
        ("/api/battery_pack", "manufacturer_name"),
        ("/api/battery_pack", "location"),
        ("/api/battery_pack", "status_label"),
        ("/api/battery_pack", "search"),
        ("/api/battery_pack", "dealer_id"),
        ("/api/batteries", "status"),
        ("/api/batteries", "dealer_id"),
        ("/api/batteries/health-report", "dealer_id"),
        ("/api/consumers", "dealer_id"),
        ("/api/consumers", "kyc_status"),
    ],
)
def test_an_empty_filter_value_means_no_filter(
    client: TestClient, world: World, path: str, param: str
) -> None:
    headers = bearer(world.admin)
    unfiltered = client.get(path, headers=headers)
    empty = client.get(path, params={param: ""}, headers=headers)
    assert empty.status_code == 200, empty.text
    assert empty.json() == unfiltered.json()
    # ... and the document says so (it gave kyc_status's enum alone: schemathesis sent "" as invalid)
    listing = operation("GET", path)
    assert listing is not None
    (documented,) = [p for p in listing["parameters"] if p["name"] == param]
    jsonschema.validate("", documented["schema"])


# --- every numeric field of every route ----------------------------------------------------------

# Numbers a careless or hostile client sends. Non-finite values are strings (JSON has no NaN).
EXTREMES: list[object] = [
    0,
    -1,
    -0.0,
    5e-324,
    1e-12,
    1e308,
    -1e308,
    2**63,
    2**64,
    -(2**63) - 1,
    "NaN",
    "Infinity",
    "1e308",
    "",
]
NUMBERS = st.sampled_from(EXTREMES) | st.integers() | st.floats(allow_nan=False, allow_infinity=False)


def _numeric(schema: dict[str, Any]) -> bool:
    schema = component(schema)
    return schema.get("type") in ("integer", "number") or any(_numeric(s) for s in schema.get("anyOf", ()))


def _body_slots(schema: dict[str, Any], pointer: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The paths of the numeric fields of a body schema (`[]` steps into an array's items)."""
    schema = component(schema)
    if _numeric(schema) and pointer:
        yield pointer
        return
    for option in (*schema.get("anyOf", ()), *schema.get("oneOf", ())):
        if component(option).get("type") in ("object", "array") or "$ref" in option:
            yield from _body_slots(option, pointer)
    if schema.get("type") == "array":
        yield from _body_slots(schema.get("items", {}), (*pointer, "[]"))
    for name, field in schema.get("properties", {}).items():
        yield from _body_slots(field, (*pointer, name))


def _slots() -> list[tuple[str, str, str, tuple[str, ...]]]:
    found = set()
    for path, item in document()["paths"].items():
        for method, op in item.items():
            for parameter in op.get("parameters", []):
                if _numeric(parameter.get("schema", {})):
                    found.add((method.upper(), path, parameter["in"], (parameter["name"],)))
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content is not None:
                for pointer in _body_slots(content["schema"]):
                    found.add((method.upper(), path, "body", pointer))
    return sorted(found)


SLOTS = _slots()


def _with(body: Any, pointer: tuple[str, ...], value: object) -> Any:
    """`body` with the field at `pointer` set to `value` (objects and arrays made on the way)."""
    step, rest = pointer[0], pointer[1:]
    if step == "[]":
        items = body if isinstance(body, list) and body else [{}]
        return [_with(items[0], rest, value) if rest else value]
    body = dict(body) if isinstance(body, dict) else {}
    body[step] = _with(body.get(step), rest, value) if rest else value
    return body


def test_every_route_has_numeric_fields_to_throw_at() -> None:
    kinds = {(m, p) for m, p, _, _ in SLOTS}
    assert ("POST", "/api/commands/bulk") in kinds and ("GET", "/api/battery_pack") in kinds
    assert len(SLOTS) >= 25, SLOTS


def _extremes(test: Any) -> Any:
    """Every value of EXTREMES as an explicit example (run each time, besides the drawn ones)."""
    for value in EXTREMES:
        test = example(drawn=value)(test)
    return test


def _url(path: str, values: dict[str, object]) -> str:
    """The path with its parameters filled (an id the fixture does not know: 1)."""
    return re.sub(r"\{([^}]*)\}", lambda m: str(values.get(m[1], 1)), path)


@pytest.mark.parametrize(
    ("method", "path", "where", "pointer"), SLOTS, ids=[f"{m} {p} {w}:{'.'.join(f)}" for m, p, w, f in SLOTS]
)
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@_extremes
@given(drawn=NUMBERS)
def test_no_number_is_a_server_error(
    client: TestClient,
    world: World,
    method: str,
    path: str,
    where: str,
    pointer: tuple[str, ...],
    drawn: object,
) -> None:
    """Each extreme value, and numbers hypothesis draws, in one numeric field at a time, as an admin:
    a 4xx in the spec's body or a success, never a 5xx."""
    if pointer == ("wait",) and isinstance(drawn, int | float) and 0.01 < drawn <= 30:
        return  # a valid wait only makes the answer wait (for a device, or an SMS worker)
    op = operation(method, path)
    assert op is not None
    serial = world.battery_a["serial_number"]
    values: dict[str, object] = {
        "serial": serial,
        "i": serial,
        "consumer_id": world.consumer_a["id"],
        "document_id": 1,
    }
    body, params = request_example(op), {}
    if where == "path":
        values[pointer[0]] = drawn
    elif where == "query":
        params[pointer[0]] = drawn
    else:
        body = _with(body, pointer, drawn)
    answer = client.request(method, _url(path, values), params=params, json=body, headers=bearer(world.admin))
    assert answer.status_code < 500, (method, path, where, pointer, drawn, answer.text[:300])
    if answer.status_code >= 400:
        assert set(answer.json()) >= {"error", "details", "code"}, answer.text[:300]


# --- ids: documented only as far as a JSON number holds them exactly ------------------------------


def _integer_maxima(node: Any, where: str = "") -> Iterator[tuple[str, int]]:
    if isinstance(node, dict):
        if node.get("type") == "integer" and "maximum" in node:
            yield where, node["maximum"]
        for key, value in node.items():
            yield from _integer_maxima(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _integer_maxima(value, f"{where}/{i}")


def test_no_integer_is_documented_beyond_what_a_json_number_holds_exactly() -> None:
    """2**63 - 1 as a JSON number reads back as 2**63 in a double-based client (and in schemathesis):
    a documented-valid id the API then refused with a 400. Ids stop at 2**53 - 1 everywhere."""
    beyond = [(where, high) for where, high in _integer_maxima(document()) if high > MAX_ID]
    assert not beyond, beyond


def test_the_largest_documented_id_names_nothing_and_is_a_404(client: TestClient, world: World) -> None:
    admin = bearer(world.admin)
    for path in (f"/api/finance/loans/{MAX_ID}", f"/api/service/tickets/{MAX_ID}"):
        assert client.get(path, headers=admin).status_code == 404, path
        beyond = client.get(path.replace(str(MAX_ID), str(MAX_ID + 1)), headers=admin)
        assert beyond.status_code == 400, beyond.text
    serial = world.battery_a["serial_number"]
    answer = client.put(f"/api/batteries/{serial}/assign", json={"consumer_id": MAX_ID}, headers=admin)
    assert answer.status_code == 404, answer.text
    # a dealer named in a body that does not exist is not found either (it was a 400)
    answer = client.post(
        "/api/batteries", json={"serial_number": "NOSUCHDEALER1", "dealer_id": MAX_ID}, headers=admin
    )
    assert answer.status_code == 404 and answer.json()["error"] == "Dealer not found", answer.text
    consumer = {"name": "Ram Kumar", "phone": "+919876500001", "dealer_id": MAX_ID}
    answer = client.post("/api/consumers", json=consumer, headers=admin)
    assert answer.status_code == 404 and answer.json()["error"] == "Dealer not found", answer.text


# One object at a time (the array form of a bulk create holds the same model), and not the lender's
# webhook: it is refused unsigned before its body is read (schemas/lender.py is strict on its own).
BODY_SLOTS = [
    slot
    for slot in SLOTS
    if slot[2] == "body" and "[]" not in slot[3] and slot[1] != "/api/nbfc/webhook-status"
]


@pytest.mark.parametrize(
    ("method", "path", "where", "pointer"),
    BODY_SLOTS,
    ids=[f"{m} {p} {w}:{'.'.join(f)}" for m, p, w, f in BODY_SLOTS],
)
def test_a_boolean_for_a_number_is_400(
    client: TestClient, world: World, method: str, path: str, where: str, pointer: tuple[str, ...]
) -> None:
    """pydantic reads `false` as 0 (a ticket's longitude became 0.0, found by schemathesis): the
    document says a number, so true and false are refused, naming the field."""
    op = operation(method, path)
    assert op is not None
    serial = world.battery_a["serial_number"]
    values = {"serial": serial, "i": serial, "consumer_id": world.consumer_a["id"]}
    for flag in (True, False):
        body = _with(request_example(op), pointer, flag)
        answer = client.request(method, _url(path, values), json=body, headers=bearer(world.admin))
        assert answer.status_code == 400, (flag, answer.text[:300])
        assert pointer[-1] in answer.json()["error"] or pointer[-1] in answer.text, answer.text[:300]


def test_a_number_that_may_be_text_documents_the_text_it_takes() -> None:
    """A decimal taken as a number or as text says which text (decimal_input): a bare "string"
    documented "" valid, and the API refused it (a report's amount_collected, found by schemathesis)."""
    bare = [
        f"{name}.{field}"
        for name, schema in document()["components"]["schemas"].items()
        for field, prop in schema.get("properties", {}).items()
        if any(v.get("type") == "number" for v in prop.get("anyOf", []))
        and any(v.get("type") == "string" and "pattern" not in v for v in prop.get("anyOf", []))
    ]
    assert bare == []
