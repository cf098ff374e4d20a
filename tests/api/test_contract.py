"""The OpenAPI document is the contract: every route types its answers, the spec's example responses
conform to the declared shapes (or the test says why not), and real answers conform too."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from api.app import create_app
from api.tags import Tag
from tests.api.authz import ROLES
from tests.api.conftest import World, bearer
from tests.api.contract import (
    Example,
    answer_schema,
    document,
    operation,
    problems,
    request_example,
    spec_dir,
    spec_examples,
)
from tests.api.test_authorization import CASES
from tests.conftest import make_settings

# Answers that are not JSON, and why (each still declares its media types and error bodies).
NOT_JSON = {
    ("GET", "/api/consumers/{consumer_id}/documents/{document_id}/file"): "the document's file itself",
}
SPEC_STATUSES = {400, 401, 403, 404, 409, 413, 429}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in document()["paths"].items()
        for method, op in item.items()
    ]


OPERATIONS = _operations()


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_every_route_declares_its_answers(method: str, path: str, op: dict[str, Any]) -> None:
    """A typed success body (or a listed non-JSON answer), the spec's error body for each error
    status, a one-line summary and a tag that is one of the spec's sections."""
    successes = {int(s): r for s, r in op["responses"].items() if s.startswith("2")}
    assert successes, "no success answer"
    for status, response in successes.items():
        content = response.get("content", {})
        if (method, path) in NOT_JSON:
            assert content and "application/json" not in content, "a non-JSON answer lists its media types"
            continue
        schema = content.get("application/json", {}).get("schema")
        assert schema, f"{status}: no JSON schema"
        typed = "$ref" in schema or schema.get("type") in ("array", "object") or "anyOf" in schema
        assert typed and schema != {"type": "object"}, f"{status}: untyped answer {schema}"
        items = schema.get("items", {})
        assert schema.get("type") != "array" or items, f"{status}: an array of untyped items"
    errors = {int(s) for s in op["responses"] if s[0] in "45"}
    assert "422" not in op["responses"], "validation errors answer 400"
    for status in errors & SPEC_STATUSES:
        schema = answer_schema(op, status)
        assert schema is not None and "$ref" in str(schema), f"{status}: not the spec's error body"
    if op.get("security"):
        assert 401 in errors, "a route that needs a token lists 401"
    if op.get("parameters") or op.get("requestBody"):
        assert 400 in errors, "a route with input lists 400"
    assert op.get("summary") and "\n" not in op["summary"], "a one-line summary"
    assert op.get("tags") and set(op["tags"]) <= {t.value for t in Tag}, f"tags {op.get('tags')}"


def test_operation_ids_are_unique() -> None:
    """Generated clients name their functions by operation id (the endpoint's name)."""
    ids = [op["operationId"] for _, _, op in OPERATIONS]
    assert sorted(i for i in set(ids) if ids.count(i) > 1) == []


def test_every_api_route_of_the_app_is_in_the_document() -> None:
    """No /api route hides from the coverage above by leaving the document (pages and probes
    outside /api, such as /api-docs and /healthz, may)."""
    app = create_app(make_settings("postgresql://unused/unused"))
    listed = {(m, p) for m, p, _ in OPERATIONS}
    hidden = {
        (method, route.path_format)
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute) and route.path_format.startswith("/api/")
        for method in route.methods
        if (method, route.path_format) not in listed
    }
    assert hidden == set()


# --- the spec's examples -------------------------------------------------------------------------


_DESIRED = "`status` is what the device confirmed; we add `desired_status`, what was asked (README)"
_PACK = "each pack adds its id, status and desired status, health, dealer and owner, allocation and times"
_PACK_FIELDS = {
    "id",
    "health_score",
    "status",
    "desired_status",
    "dealer_id",
    "owner_id",
    "owner_name",
    "allocation",
    "created_at",
    "updated_at",
}
_FINANCE = "the finance domain adds the ids and amounts a client follows up with (api/finance/models.py)"

# Where our answer differs from the spec's example, and why: (reason, the fields we add, a change
# for anything else). The test fails if a listed difference stops being one, so the list stays true.
DEVIATIONS: dict[str, tuple[str, set[str], Callable[[Any], Any] | None]] = {
    "POST /api/auth/login": (
        "the spec's login answer names the user: ours is the same for every phone, so that it does "
        "not tell anyone which phones have accounts",
        set(),
        lambda b: {k: v for k, v in b.items() if k != "user"},
    ),
    "POST /api/auth/verify-otp": ("we add the token's lifetime", {"expires_in"}, None),
    "GET /api/batteries": (_DESIRED, {"desired_status"}, None),
    "POST /api/batteries": (_DESIRED, {"desired_status"}, None),
    "PUT /api/batteries/{serial}/assign": (_DESIRED, {"desired_status"}, None),
    "POST /api/batteries/{serial}/control": (
        f"{_DESIRED}; and the command that will apply it",
        {"desired_status", "command"},
        None,
    ),
    "GET /api/batteries/{serial}": (
        f"{_DESIRED}; the battery's control state (desired vs reported, the pending command: "
        "ARCHITECTURE.md) and the reading's temperature",
        {"desired_status", "control", "temperature"},
        None,
    ),
    "GET /api/batteries/health-report": (
        "we add what the latest readings say about the same batteries, how many await their "
        "device's confirmation of a new status, and the predictive maintenance of the health analytics",
        {"telemetry", "awaiting_confirmation", "predictive_maintenance"},
        None,
    ),
    "POST /api/consumers/{id}/documents": (
        "the spec's `note` says its implementation is a mock; our document adds its file's content type, "
        "size and SHA-256",
        {"content_type", "size_bytes", "sha256"},
        lambda b: {k: v for k, v in b.items() if k != "note"},
    ),
    "GET /api/battery_pack": (_PACK, _PACK_FIELDS, None),
    "GET /api/battery_pack/{i}": (
        f"{_PACK}, and the allocation history; the spec's example leaves out warranty_months, which its "
        "create and list examples carry",
        {*_PACK_FIELDS, "warranty_months", "allocations"},
        None,
    ),
    "POST /api/battery_pack/{i}/enable": (
        "the spec writes these times with a space (`2024-09-04 00:00:00+05:30`), not as RFC 3339 as its "
        "own deletedAt (`2024-07-30T12:34:56Z`) and every time we answer",
        set(),
        lambda b: {k: v.replace(" ", "T", 1) for k, v in b.items()},
    ),
    "POST /api/finance/applications": (_FINANCE, {"battery_serial", "dealer_id"}, None),
    "GET /api/finance/applications": (_FINANCE, {"battery_serial", "dealer_id"}, None),
    "PUT /api/finance/applications/{id}/approve": (_FINANCE, {"battery_serial", "dealer_id"}, None),
    "GET /api/finance/overdue": (_FINANCE, {"loan_id", "outstanding", "consumer_id", "dealer_id"}, None),
    "POST /api/finance/auto-disable": (
        "the run says what it did besides disabling: the commands and bulk roll-outs it issued, the "
        "consumers warned, the batteries deferred",
        {"command_ids", "disabled", "warned_count", "deferred", "bulk_ids"},
        None,
    ),
    "GET /api/finance/collection-report": (
        "we add the period the report covers",
        {"start_date", "end_date"},
        None,
    ),
    "POST /api/nbfc/submit-application": (
        "we add the lender and the delivery of the submission (the lender outbox)",
        {"nbfc_id", "delivery"},
        None,
    ),
    "POST /api/nbfc/collection-report": ("we add the lender the report went to", {"nbfc_id"}, None),
}
_TICKET = (
    "our ticket carries its whole life (priority and SLA, the battery's serial and position, who "
    "raised it, when it was assigned, started, resolved and closed, the work done and the rating)"
)
_TICKET_FIELDS = {
    "assigned_at",
    "auto_kind",
    "battery_serial",
    "closed_at",
    "customer_rating",
    "labor_hours",
    "latitude",
    "longitude",
    "parts_used",
    "priority",
    "resolution_notes",
    "resolved_at",
    "sla_due_at",
    "source",
    "started_at",
    "updated_at",
}
DEVIATIONS.update(
    {
        "POST /api/service/tickets": (_TICKET, _TICKET_FIELDS, None),
        "GET /api/service/tickets": (_TICKET, _TICKET_FIELDS, None),
        "GET /api/service/tickets/active": (_TICKET, {"priority", "sla_due_at"}, None),
        "PUT /api/service/tickets/{id}/assign": (
            _TICKET,
            (_TICKET_FIELDS - {"priority"}) | {"location"},
            None,
        ),
        "POST /api/service/tickets/{id}/update": (
            _TICKET,
            (_TICKET_FIELDS - {"labor_hours", "parts_used", "resolution_notes"}) | {"location"},
            None,
        ),
        "GET /api/service/technicians/available": (
            "we add each technician's distance to the ticket, the score's first factor",
            {"distance_km"},
            None,
        ),
    }
)
for _sms in ("send-sms", "send-otp", "battery-status"):
    DEVIATIONS[f"POST /api/messaging/{_sms}"] = (
        "we add the message's own id (its outbox row), which a client can follow while the provider's "
        "message_id is still null",
        {"outbox_id"},
        None,
    )
_REQUIRED = re.compile(r": '(\w+)' is a required property$")
EXAMPLES = spec_examples()


def test_the_spec_documents_are_found_and_read() -> None:
    if spec_dir() is None:
        pytest.skip("the spec documents (shared/spec/) are not beside this checkout")
    assert len(EXAMPLES) >= 40 and {e.source for e in EXAMPLES} == {
        "ienerzy-bms-api.md",
        "irasus-battery-pack-api.rst",
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_the_spec_examples_conform_to_the_declared_answers(example: Example) -> None:
    """What the spec's example shows, our answer shows in the same shape and types; the fields we
    add, and anything else that differs, are listed in DEVIATIONS with the reason."""
    op = operation(example.method, example.path)
    if op is None:
        pytest.skip(f"{example.id} ({example.title}) is not in the app yet")
    status = min(int(s) for s in op["responses"] if s.startswith("2"))
    schema = answer_schema(op, status)
    assert schema is not None
    why, added, change = DEVIATIONS.get(example.id, ("", set(), None))
    found = problems(schema, example.body)
    if change is not None:
        assert found, f"listed as a deviation ({why}) but the example fits: remove it from DEVIATIONS"
        found = problems(schema, change(copy.deepcopy(example.body)))
    missing = {m[1] for p in found if (m := _REQUIRED.search(p))}
    assert [p for p in found if not (m := _REQUIRED.search(p)) or m[1] not in added] == [], why
    assert missing == added, f"DEVIATIONS lists {sorted(added)} as added, the answer adds {sorted(missing)}"


def test_the_spec_error_examples_conform_to_the_error_body() -> None:
    errors = {
        400: {"error": "Missing required fields", "details": "Phone number and name are required"},
        401: {"error": "Authentication required", "details": "Valid JWT token is required"},
        403: {"error": "Access denied", "details": "Insufficient permissions for this operation"},
        404: {"error": "Battery not found", "details": "No battery found with serial number BAT999"},
    }
    op = operation("GET", "/api/batteries/{serial}")
    assert op is not None
    for status, body in errors.items():
        schema = answer_schema(op, status) or answer_schema(op, 400)
        assert schema is not None and problems(schema, body) == []
    limited = {
        "error": "Rate limit exceeded",
        "details": "Too many requests. Please try again later.",
        "retry_after": 60,
    }
    assert problems(answer_schema(op, 429) or {}, limited) == []
    assert problems(answer_schema(op, 429) or {}, {"error": "Rate limit exceeded"}) != []  # retry_after


# --- real answers --------------------------------------------------------------------------------


def _conforms(method: str, path: str, answer: Any) -> None:
    op = operation(method, path)
    assert op is not None, f"{method} {path} is not in the document"
    schema = answer_schema(op, answer.status_code)
    assert schema is not None, f"{method} {path} answered {answer.status_code}, which it does not declare"
    assert problems(schema, answer.json()) == [], answer.text[:500]


REAL = sorted(k for k in CASES if k not in NOT_JSON)


@pytest.mark.parametrize(("method", "path"), REAL, ids=[f"{m} {p}" for m, p in REAL])
def test_real_answers_conform_to_the_declared_answers(
    client: TestClient, world: World, method: str, path: str
) -> None:
    """Each route's answer for the first role that succeeds (the authorization matrix's requests), and
    an error answer, against the document."""
    case = CASES[(method, path)]
    url, kwargs = case.build(world, client)  # once: a case may create what it needs (an application)
    own_headers = kwargs.pop("headers", {})  # a case may add its own
    succeeds = next(r for r in ROLES if case.expect[r] < 300)
    refused = next((r for r in ROLES if case.expect[r] >= 400), None)
    for role in (succeeds, refused) if refused else (succeeds,):
        headers = {**bearer(world.users()[role]), **own_headers}
        _conforms(method, path, client.request(method, url, headers=headers, **copy.deepcopy(kwargs)))


def test_real_command_answers_conform(client: TestClient, world: World) -> None:
    """The command routes (their own domain's matrix has no cases yet) from a fixture."""
    headers, serial = bearer(world.admin), world.battery_a["serial_number"]
    control = client.post(f"/api/batteries/{serial}/control", json={"action": "inactive"}, headers=headers)
    _conforms("POST", "/api/batteries/{serial}/control", control)
    listed = client.get(f"/api/batteries/{serial}/commands", headers=headers)
    _conforms("GET", "/api/batteries/{serial}/commands", listed)
    command_id = listed.json()[0]["id"]
    _conforms("GET", "/api/commands/{command_id}", client.get(f"/api/commands/{command_id}", headers=headers))
    cancelled = client.post(f"/api/commands/{command_id}/cancel", json={"reason": "test"}, headers=headers)
    _conforms("POST", "/api/commands/{command_id}/cancel", cancelled)
    again = client.post(f"/api/commands/{command_id}/cancel", headers=headers)
    assert again.status_code == 409
    _conforms("POST", "/api/commands/{command_id}/cancel", again)
    pending = client.post(
        f"/api/battery_pack/{serial}/enable",
        params={"wait": 0},
        json={"operation_type": "disable"},
        headers=headers,
    )
    assert pending.status_code == 202
    _conforms("POST", "/api/battery_pack/{i}/enable", pending)
    bulk = client.post(
        "/api/commands/bulk",
        json={"action": "enable", "serials": [serial], "reason": "test"},
        headers=headers,
    )
    _conforms("POST", "/api/commands/bulk", bulk)
    followed = client.get(f"/api/commands/bulk/{bulk.json()['id']}", headers=headers)
    _conforms("GET", "/api/commands/bulk/{bulk_id}", followed)
    missing = client.get(f"/api/commands/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    _conforms("GET", "/api/commands/{command_id}", missing)


WITH_EXAMPLES = [(m, p, op) for m, p, op in OPERATIONS if request_example(op) is not None]


@pytest.mark.parametrize(
    ("method", "path", "op"), WITH_EXAMPLES, ids=[f"{m} {p}" for m, p, _ in WITH_EXAMPLES]
)
def test_documented_request_examples_are_accepted(
    client: TestClient, world: World, method: str, path: str, op: dict[str, Any]
) -> None:
    """What the document shows a client is what the route accepts: its example is not a 400 (sent
    as a dealer, as the spec's examples are, or as an admin where a dealer may not)."""
    values = {
        "serial": world.battery_a["serial_number"],
        "i": world.battery_a["serial_number"],
        "consumer_id": world.consumer_a["id"],
    }
    url = re.sub(r"\{([^}]*)\}", lambda m: str(values.get(m[1], uuid.UUID(int=1))), path)
    example = request_example(op)
    if isinstance(example, dict) and example.get("asset_tag") and "{i}" in path:
        example = {**example, "asset_tag": values["i"]}  # the pack's own tag
    answer = client.request(method, url, json=example, headers=bearer(world.dealer_a_user))
    if answer.status_code == 403:
        answer = client.request(method, url, json=example, headers=bearer(world.admin))
    assert answer.status_code != 400 and answer.status_code < 500, answer.text[:500]
