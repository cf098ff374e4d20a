"""HTTP details every route shares: a method a path does not have is 405 with the spec's body and Allow."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import World, bearer


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/battery_pack", {"GET", "POST", "PATCH", "DELETE"}),
        ("POST", "/api/battery_pack/P1", {"GET", "PATCH", "DELETE"}),
        ("GET", "/api/commands/bulk", {"POST"}),
        ("DELETE", "/api/auth/login", {"POST"}),
        ("OPTIONS", "/api/batteries", {"GET", "POST"}),
        ("PATCH", "/api/batteries/health-report", {"GET"}),
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
