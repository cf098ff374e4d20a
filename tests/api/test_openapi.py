"""The API docs: Swagger UI is served offline by the app itself, and the OpenAPI document is whole."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_swagger_ui_and_every_asset_it_references_come_from_the_app(client: TestClient) -> None:
    page = client.get("/api-docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    spec_url = re.search(r"""url: ['"]([^'"]+)['"]""", html)
    assert spec_url is not None
    assert len(assets) >= 3, assets  # the script, the stylesheet, the icon
    for url in [*assets, spec_url[1]]:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not served by the app"
        answer = client.get(url)
        assert answer.status_code == 200 and answer.content, url
    assert not re.search(r"https?://", html), "the page loads nothing from elsewhere"
    assert '"validatorUrl": null' in html  # no badge fetched from swagger.io


def test_docs_are_served_and_complete(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    schemas = spec["components"]["schemas"]
    dangling = {r for r in _refs(spec) if r.removeprefix("#/components/schemas/") not in schemas}
    assert dangling == set()
    assert "/api/battery_pack" in spec["paths"] and "/api/auth/verify-otp" in spec["paths"]
    assert "HTTPValidationError" not in schemas  # validation errors are 400 in the spec's body
    assert [t["name"] for t in spec["tags"]][:3] == [
        "Authentication",
        "Battery Management",
        "Consumer Management",
    ]


def test_routes_that_read_their_own_bodies_and_parameters_document_them(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    detail = paths["/api/batteries/{serial}"]["get"]  # a DirectRoute (api/direct_route.py)
    assert [(p["name"], p["in"], p["required"]) for p in detail["parameters"]] == [("serial", "path", True)]
    assert detail["security"] == [{"HTTPBearer": []}]
    assert detail["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BatteryDetail"
    }
    listing = paths["/api/battery_pack"]["get"]  # a DirectRoute with a query model
    names = {p["name"] for p in listing["parameters"] if p["in"] == "query"}
    assert {"limit", "offset", "search", "sort", "order", "location", "status_label", "dealer_id"} <= names
    assert listing["security"] == [{"HTTPBearer": []}]
    create = paths["/api/battery_pack"]["post"]["requestBody"]["content"]  # JSON (one or many) or CSV
    assert create["application/json"]["schema"]["oneOf"][0] == {
        "$ref": "#/components/schemas/BatteryPackCreate"
    }
    assert "multipart/form-data" in create
    bulk_patch = paths["/api/battery_pack"]["patch"]["requestBody"]["content"]["application/json"]
    assert isinstance(bulk_patch["example"], list)  # the documented example is one the route accepts
