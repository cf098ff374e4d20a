"""A database outage is a 503 with Retry-After in the spec's body, not a 500 (found by the chaos run)."""

from __future__ import annotations

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg_pool import PoolTimeout

from api.errors import install_error_handlers


@pytest.mark.parametrize(
    "exc",
    [psycopg.OperationalError("server closed the connection unexpectedly"), PoolTimeout("no connection")],
    ids=["connection lost", "no connection in time"],
)
def test_an_unreachable_database_is_503(exc: Exception) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/down")
    async def down() -> None:
        raise exc

    answer = TestClient(app, raise_server_exceptions=False).get("/down")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert answer.json() == {
        "error": "Service temporarily unavailable",
        "details": "The database is not reachable; retry shortly",
        "code": "SERVICE_UNAVAILABLE",
    }
