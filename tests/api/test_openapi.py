"""The API docs: Swagger UI is served and every schema reference in the OpenAPI document resolves."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_docs_are_served_and_complete(client: TestClient) -> None:
    assert client.get("/api-docs").status_code == 200
    spec = client.get("/api/openapi.json").json()
    schemas = spec["components"]["schemas"]
    dangling = {r for r in _refs(spec) if r.removeprefix("#/components/schemas/") not in schemas}
    assert dangling == set()
    assert "/api/battery_pack" in spec["paths"] and "/api/auth/verify-otp" in spec["paths"]


def test_routes_that_read_their_own_parameters_document_them(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    detail = paths["/api/batteries/{serial}"]["get"]  # a DirectRoute (api/direct_route.py)
    assert [(p["name"], p["in"], p["required"]) for p in detail["parameters"]] == [("serial", "path", True)]
    assert detail["security"] == [{"HTTPBearer": []}]
    listing = paths["/api/battery_pack"]["get"]  # a DirectRoute with a query model
    names = {p["name"] for p in listing["parameters"] if p["in"] == "query"}
    assert {"limit", "offset", "search", "sort", "order", "location", "status_label", "dealer_id"} <= names
    assert listing["security"] == [{"HTTPBearer": []}]
