"""HTTP details every route shares: a method a path does not have is 405 with the spec's body and
Allow; a malformed body is one answer everywhere."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from api import query
from tests.api.conftest import World, bearer
from tests.api.contract import document


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/battery_pack", {"GET", "POST", "PATCH", "DELETE"}),
        ("POST", "/api/battery_pack/P1", {"GET", "PATCH", "DELETE"}),
        ("GET", "/api/commands/bulk", {"POST"}),
        ("DELETE", "/api/auth/login", {"POST"}),
        ("OPTIONS", "/api/batteries", {"GET", "POST"}),
        ("PATCH", "/api/batteries/health-report", {"GET"}),
        ("PATCH", "/api/service/technicians/available", {"GET"}),
    ],
)
def test_a_method_the_path_lacks_is_405_with_allow(
    client: TestClient, world: World, method: str, path: str, allowed: set[str]
) -> None:
    answer = client.request(method, path, headers=bearer(world.admin))
    assert answer.status_code == 405, answer.text
    assert {m.strip() for m in answer.headers["allow"].split(",")} == allowed
    body = answer.json()
    assert body["code"] == "METHOD_NOT_ALLOWED" and body["error"] == "Method not allowed"
    assert method in body["details"]


def _json_routes() -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method, op in item.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})
        # a route authenticated otherwise (an NBFC's signed webhook) refuses an unsigned body first
        and (op.get("security") or path.startswith("/api/auth/"))
    ]


JSON_ROUTES = _json_routes()


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES, ids=[f"{m} {p}" for m, p in JSON_ROUTES])
def test_a_malformed_json_body_is_one_answer_everywhere(
    client: TestClient, world: World, method: str, path: str
) -> None:
    """Every route that takes JSON answers a broken body alike, saying where it breaks (no parser's
    text, no offset posing as a field name)."""
    serial = world.battery_a["serial_number"]
    values = {"serial": serial, "i": serial, "consumer_id": world.consumer_a["id"], "technician_id": 1}
    url = re.sub(r"\{([^}]*)\}", lambda m: str(values.get(m[1], uuid.UUID(int=1))), path)
    headers = {**bearer(world.admin), "Content-Type": "application/json"}
    answer = client.request(method, url, content=b'{"asset_tag": "A1",\n "model": }', headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {
        "error": "Invalid JSON",
        "details": "Expecting value at line 2, column 11 (character 30)",
        "code": "INVALID_JSON",
    }


def test_a_group_delete_without_a_body_names_the_field_it_needs(client: TestClient, world: World) -> None:
    answer = client.delete("/api/battery_pack", headers=bearer(world.admin))
    assert answer.status_code == 400
    assert answer.json()["error"] == "Invalid fields: asset_tags"
    assert answer.json()["details"][0]["field"] == "asset_tags"


def test_a_query_parameter_the_route_lacks_is_400(client: TestClient, world: World) -> None:
    """A misspelt filter is refused, not ignored (it answered the whole list as if filtered)."""
    headers = bearer(world.admin)
    assert client.get("/api/consumers", params={"kyc_status": "verified"}, headers=headers).status_code == 200
    answer = client.get("/api/consumers", params={"kyc_stauts": "verified"}, headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "Unknown query parameters"
    assert answer.json()["details"] == [
        {"field": "kyc_stauts", "message": "is not a parameter of this route"}
    ]


def test_the_routes_query_parameters_are_read_at_start_up(
    client_for: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The map of documented query parameters is built before the first request, not by it."""
    monkeypatch.setattr(query, "_DOCUMENTED", {})
    client_for()
    assert ("GET", "/api/consumers") in query._DOCUMENTED
    assert "kyc_status" in query._DOCUMENTED["GET", "/api/consumers"]
