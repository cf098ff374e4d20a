"""What a request may cost before it is refused: the token before the body, and bodies capped.

FastAPI reads and parses a route's body before it resolves the route's dependencies, so without this
an anonymous 24 MB JSON array was read and parsed, then answered 401. RequestGuard sits in front of
the routes and, for a request that carries a body:

- to a route that needs a bearer token, checks the token first (401 without reading a byte);
- refuses a declared Content-Length over the cap at once, and stops a body that streams past it
  (413 in the spec's body, as every route answers it): JSON (and any non-multipart) bodies at
  `api_max_json_bytes`, multipart uploads at the largest upload cap. Each upload route reads its
  file under its own, smaller cap while it streams (`read_form`).

(FastAPI's own `max_body_size` answers a declared oversize with a plain-text 413 when the route
answers before reading, e.g. a 401: not the spec's body, hence this.)
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import make_asgi_app
from starlette.datastructures import FormData, Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import BearerPrincipal, principal_of
from api.errors import ApiError, BadRequest, PayloadTooLarge, Unauthorized

# Boundaries and part headers around an uploaded file, and the form's small fields.
MULTIPART_OVERHEAD = 64 * 1024
# Methods whose requests carry no body unless a header says so (HTTP/2 may stream one without a length).
_BODILESS = frozenset(("GET", "HEAD", "OPTIONS"))


def _needs_token(dependant: Any) -> bool:
    """Whether the route (or one of its dependencies) authenticates with the bearer token."""
    if isinstance(dependant.call, BearerPrincipal):
        return True
    return any(_needs_token(d) for d in dependant.dependencies)


def _body_headers(scope: Scope) -> tuple[int | None, bool]:
    """(Content-Length, whether Transfer-Encoding is sent), read from the raw headers in one pass:
    this runs on every request, the hot GETs included."""
    length, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked


def too_large(what: str, cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The {what} is larger than {cap} bytes")


class RequestGuard:
    def __init__(self, app: ASGIApp, *, json_cap: int, upload_cap: int) -> None:
        self.app = app
        self.json_cap = json_cap
        self.upload_cap = upload_cap + MULTIPART_OVERHEAD
        self._token_routes: list[Any] | None = None

    def _route_needs_token(self, scope: Scope) -> bool:
        if self._token_routes is None:
            self._token_routes = [
                (route, isinstance(route.original_route, APIRoute) and _needs_token(route.dependant))
                for route in iter_route_contexts(scope["app"].routes)  # the FastAPI app's routes
            ]
        for route, needs in self._token_routes:
            if route.matches(scope)[0] is Match.FULL:
                return needs  # type: ignore[no-any-return]
        return False  # no route: the router answers 404 or 405 without reading the body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _body_headers(scope)
        if declared == 0 or (declared is None and not chunked and scope["method"] in _BODILESS):
            await self.app(scope, receive, send)  # no body: nothing to guard (the hot GETs)
            return
        try:
            if self._route_needs_token(scope):
                await principal_of(Request(scope))  # kept in the request's state for the route
            multipart = Headers(scope=scope).get("content-type", "").startswith("multipart/form-data")
            cap, what = (self.upload_cap, "upload") if multipart else (self.json_cap, "request body")
            if declared is not None and declared > cap:
                raise too_large(what, cap)
        except ApiError as exc:
            await exc.response()(scope, receive, send)
            return
        await self.app(scope, _capped(receive, cap, what), send)


def _capped(receive: Receive, cap: int, what: str) -> Receive:
    seen = 0

    async def capped_receive() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                # An HTTPException passes through FastAPI's body reading to the app's handlers.
                raise StarletteHTTPException(413, detail=f"The {what} is larger than {cap} bytes")
        return message

    return capped_receive


async def read_form(
    request: Request, *, cap: int, what: str, fields: tuple[str, ...], max_files: int, max_fields: int
) -> FormData:
    """The multipart form, its stream stopped at `cap` bytes (413): an upload route's own cap. A
    part that is none of `fields` is a 400 naming it (it was ignored, while the document said no
    other part)."""

    async def stream() -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > cap + MULTIPART_OVERHEAD:
                raise too_large(what, cap)
            yield chunk

    parser = MultiPartParser(request.headers, stream(), max_files=max_files, max_fields=max_fields)
    try:
        form = await parser.parse()
    except MultiPartException as exc:  # no boundary, too many files or fields: its message says which
        raise BadRequest(exc.message, error="Invalid multipart body") from None
    unknown = sorted(set(form.keys()) - set(fields))
    if unknown:
        await form.close()
        raise BadRequest(
            [
                {"field": name[:100], "message": f"is not a part of this form ({', '.join(fields)})"}
                for name in unknown
            ],
            error="Invalid multipart body",
        )
    return form


def guarded_metrics(token: str) -> ASGIApp:
    """Prometheus' exporter for whoever sends `Authorization: Bearer <token>` (401 otherwise)."""
    exporter = make_asgi_app()
    expected = f"Bearer {token}".encode()

    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        given = Headers(scope=scope).get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            refused = Unauthorized(
                "Send PACKFLEET_METRICS_TOKEN as a bearer token", error="Metrics token required"
            )
            await refused.response()(scope, receive, send)
            return
        await exporter(scope, receive, send)

    return metrics
