"""A query parameter the document does not list for a route is refused (400), not ignored: a
misspelt filter (`?kyc_stauts=verified`) would otherwise answer the whole list as if filtered."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute

from api.errors import BadRequest

# (METHOD, path) → the query parameters the document lists. The routes are the same in every app a
# process builds (settings change none of them), and the document takes a second to build: once.
_DOCUMENTED: dict[tuple[str, str], frozenset[str]] = {}


def documented_query(app: FastAPI) -> dict[tuple[str, str], frozenset[str]]:
    if not _DOCUMENTED:
        _DOCUMENTED.update(
            {
                (method.upper(), path): frozenset(
                    p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"
                )
                for path, item in app.openapi()["paths"].items()
                for method, operation in item.items()
            }
        )
    return _DOCUMENTED


async def refuse_unknown_query(request: Request) -> None:
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    method = "GET" if request.method == "HEAD" else request.method
    listed = documented_query(request.app).get((method, route.path_format))
    if listed is None:  # not in the document (a route kept out of it)
        return
    unknown = sorted(set(request.query_params) - listed)
    if unknown:
        raise BadRequest(
            [{"field": name[:100], "message": "is not a parameter of this route"} for name in unknown[:20]],
            error="Unknown query parameters",
        )
