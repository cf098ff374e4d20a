"""Reviewer probe: extreme dates on the new report routes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import World, bearer

CASES = [
    ("/api/finance/collection-report", {"end_date": "0001-01-01"}),
    ("/api/finance/collection-report", {"start_date": "9999-12-31", "end_date": "9999-12-31"}),
    ("/api/analytics/collection-report", {"to": "0001-01-01"}),
    ("/api/analytics/battery-health", {"to": "0001-01-01"}),
    ("/api/analytics/battery-health", {"to": "0001-06-01"}),
    ("/api/analytics/service-metrics", {"to": "9999-12-31"}),
    ("/api/analytics/dealer-dashboard", {"to": "9999-12-31"}),
    ("/api/analytics/nbfc-portfolio", {"to": "9999-12-31"}),
    ("/api/analytics/collection-report", {"from": "0001-01-01", "to": "9999-12-31"}),
]


@pytest.mark.parametrize(("path", "params"), CASES)
def test_no_500(client: TestClient, world: World, path: str, params: dict) -> None:
    client.raise_server_exceptions = False
    answer = client.get(path, params=params, headers=bearer(world.admin))
    print(path, params, answer.status_code, answer.text[:200])
    assert answer.status_code < 500
