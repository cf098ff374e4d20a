"""Routes served without FastAPI's per-request machinery, for the busiest reads.

FastAPI 0.165 resolves dependencies, parameters and the response model of every request with a lot
of runtime introspection: a quarter to a third of the CPU of `GET /api/batteries/{serial}` and
`GET /api/battery_pack` (bench/api.py). A DirectRoute is still an APIRoute: matched, listed in the
OpenAPI document and answered by the app's error handlers like any other. Its endpoint takes the
Starlette Request and returns a Response itself: it authenticates explicitly
(`api.deps.authenticate`), reads path parameters from the request and its query with `read_query`
(a pydantic model; errors answer 400 as FastAPI's own do), and documents both with
`direct_openapi`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

Query = TypeVar("Query", bound=BaseModel)


class DirectRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


def read_query(model: type[Query], request: Request) -> Query:
    """The query string validated by `model` (a repeated parameter counts by its last value)."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def direct_openapi(query: type[BaseModel] | None = None, **path_parameters: str) -> dict[str, Any]:
    """`openapi_extra` of a DirectRoute: its path parameters (name=description), the fields of its
    query model, and the bearer token it requires."""
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": text}
        for name, text in path_parameters.items()
    ]
    if query is not None:
        schema = query.model_json_schema()
        required = set(schema.get("required", ()))
        for name, field in schema["properties"].items():
            description = field.pop("description", None)
            field.pop("title", None)
            parameter = {"name": name, "in": "query", "required": name in required, "schema": field}
            if description:
                parameter["description"] = description
            parameters.append(parameter)
    return {"parameters": parameters, "security": [{"HTTPBearer": []}]}
