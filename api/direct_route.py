"""A route served without FastAPI's per-request machinery, for the busiest read.

FastAPI 0.165 resolves dependencies, parameters and the response model of every request with a lot
of runtime introspection: for `GET /api/batteries/{serial}` that was ~20 % of the request's CPU
(bench/api.py). A DirectRoute is still an APIRoute: matched, listed in the OpenAPI document and
answered by the app's error handlers like any other. Its endpoint takes the Starlette Request and
returns a Response itself: it authenticates explicitly (`api.deps.authenticate`), reads its path
parameters from the request, and documents them with `direct_openapi`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class DirectRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


def direct_openapi(**path_parameters: str) -> dict[str, Any]:
    """`openapi_extra` of a DirectRoute: its path parameters (name=description) and the bearer token."""
    return {
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": text}
            for name, text in path_parameters.items()
        ],
        "security": [{"HTTPBearer": []}],
    }
