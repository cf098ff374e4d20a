"""API errors, all answered in the spec's body `{"error", "details", "code"}`.

    ApiError                 any error the API answers on purpose
    ├── BadRequest           400 (validation errors too)
    │   ├── InvalidJson      400 a body that is not JSON (where it breaks, in `details`)
    │   └── InvalidData      400 a value the database cannot store
    ├── Unauthorized         401 missing, malformed, forged or expired token
    ├── Forbidden            403 the role may not do this
    ├── NotFound             404 absent, or another dealer's (we do not say which)
    ├── MethodNotAllowed     405 with Allow: the path's methods
    ├── Conflict             409 already exists / wrong state
    ├── PayloadTooLarge      413 a body or upload over its cap
    ├── UnsupportedMedia     415 an upload of a kind not accepted
    ├── TooManyRequests      429 with Retry-After
    └── ServiceUnavailable   503 with Retry-After: the database cannot be reached just now

Everything else is a 500 whose details never leak internals.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 500
    code = "INTERNAL_ERROR"
    error = "Internal server error"

    def __init__(
        self,
        details: Any = None,
        *,
        error: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(details or error or self.error)
        self.details = details
        self.error = error or self.error
        self.code = code or self.code
        self.headers = headers
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "details": self.details, "code": self.code, **self.extra}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class BadRequest(ApiError):
    status, code, error = 400, "VALIDATION_ERROR", "Invalid request"


class InvalidJson(BadRequest):
    """A body that does not parse as JSON; `details` says where (line, column, character)."""

    code, error = "INVALID_JSON", "Invalid JSON"

    def __init__(self, exc: json.JSONDecodeError) -> None:
        super().__init__(f"{exc.msg} at line {exc.lineno}, column {exc.colno} (character {exc.pos})")


class InvalidData(BadRequest):
    """Input the database cannot hold (a NUL character, a number out of range): the caller's error."""

    code, error = "INVALID_DATA", "Invalid data"

    def __init__(self) -> None:
        super().__init__("The request holds a value the database cannot store (for example a NUL character)")


class ServiceUnavailable(ApiError):
    """The database cannot be reached just now (a restart, a failover): worth retrying shortly."""

    status, code, error = 503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable"
    RETRY_AFTER_S = 5

    def __init__(self) -> None:
        super().__init__(
            "The database is not reachable; retry shortly", headers={"Retry-After": str(self.RETRY_AFTER_S)}
        )


class Unauthorized(ApiError):
    status, code, error = 401, "AUTH_REQUIRED", "Authentication required"


class Forbidden(ApiError):
    status, code, error = 403, "FORBIDDEN", "Access denied"


class NotFound(ApiError):
    status, code, error = 404, "NOT_FOUND", "Not found"


class MethodNotAllowed(ApiError):
    status, code, error = 405, "METHOD_NOT_ALLOWED", "Method not allowed"


class Conflict(ApiError):
    status, code, error = 409, "CONFLICT", "Conflict"


class PayloadTooLarge(ApiError):
    status, code, error = 413, "PAYLOAD_TOO_LARGE", "Payload too large"


class UnsupportedMedia(ApiError):
    status, code, error = 415, "UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"


class TooManyRequests(ApiError):
    status, code, error = 429, "RATE_LIMITED", "Rate limit exceeded"


class FieldError(BaseModel):
    field: str = Field(
        examples=["phone"], description="the field, dotted for nested ones (`battery_pack.bms_type`)"
    )
    message: str = Field(examples=["String should match pattern '^\\+[1-9][0-9]{6,14}$'"])


class ErrorBody(BaseModel):
    """The spec's error body, the same for every route and every error status."""

    error: str = Field(examples=["Battery not found"])
    details: str | list[FieldError] | list[dict[str, Any]] | dict[str, Any] | None = Field(
        default=None,
        description="a sentence, or a list of `{field, message}` for validation errors",
        examples=["No battery found with serial number BAT999"],
    )
    code: str | None = Field(default=None, examples=["NOT_FOUND"])


class RateLimitedBody(ErrorBody):
    """The spec's 429 body: the error body with the seconds to wait (also in `Retry-After`)."""

    retry_after: int = Field(examples=[60])


_DESCRIPTIONS = {
    400: "Bad request: a malformed body or a field out of its range (`details` names the fields)",
    401: "Missing, invalid or expired token",
    403: "The caller's role may not do this",
    404: "Not found (or not the caller's to see)",
    409: "Conflict with the current state (`error` names it)",
    413: "Body or upload larger than its cap",
    415: "An upload of a type that is not accepted",
    429: "Rate limit exceeded",
    503: "The database is not reachable just now: retry after Retry-After seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: the spec's error body for each of these statuses."""
    return {
        status: {
            "model": RateLimitedBody if status == 429 else ErrorBody,
            "description": _DESCRIPTIONS.get(status, "Error"),
        }
        for status in statuses
    }


_BY_STATUS: dict[int, type[ApiError]] = {
    kind.status: kind
    for kind in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMedia,
        TooManyRequests,
    )
}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _message(error: dict[str, Any]) -> str:
    # A validator's ValueError reads "Value error, <message>": the message is ours, the prefix Python's.
    return str(error.get("msg", "")).removeprefix("Value error, ")


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"field": _field(tuple(e.get("loc", ()))), "message": _message(e)} for e in errors]


def validation_error(errors: list[dict[str, Any]]) -> BadRequest:
    """pydantic's errors as the spec's 400: every field named in `error`, each with its message."""
    details = validation_details(errors)
    fields = ", ".join(sorted({d["field"] for d in details}))
    return BadRequest(details, error=f"Invalid fields: {fields}")


def parse_json(data: bytes) -> Any:
    """The body as JSON, or the one 400 every route gives for a body that is not."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidJson(exc) from None
    except UnicodeDecodeError:
        raise BadRequest("The body is not UTF-8 text", error="Invalid JSON", code="INVALID_JSON") from None


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on this request's path."""
    methods: set[str] = set()
    scope = {**request.scope, "method": "\x00"}  # no route has this method: only the path decides
    for route in iter_route_contexts(request.app.routes):
        route_methods = route.methods
        if route_methods and route.matches(scope)[0] is not Match.NONE:
            methods |= route_methods
    return sorted(methods)


def _http_error(request: Request, exc: StarletteHTTPException) -> ApiError:
    kind = _BY_STATUS.get(exc.status_code)
    if kind is MethodNotAllowed:
        allow = ", ".join(allowed_methods(request))
        return MethodNotAllowed(
            f"{request.method} is not a method of {request.url.path}; it answers {allow}",
            headers={"Allow": allow},
        )
    if kind is PayloadTooLarge:
        return PayloadTooLarge(str(exc.detail))
    if kind is NotFound:
        return NotFound(f"No route {request.url.path}", error="Not found")
    if kind is None:
        return ApiError(str(exc.detail), code=f"HTTP_{exc.status_code}")
    return kind(str(exc.detail), headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Map every error the app can raise to the spec's body."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if broken is not None and isinstance(exc.body, str | bytes):
            # FastAPI keeps only the offset; parse again for the line and column.
            try:
                json.loads(exc.body)
            except json.JSONDecodeError as decode:
                return InvalidJson(decode).response()
        return validation_error(errors).response()

    @app.exception_handler(psycopg.DataError)
    async def _data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        log.info("data error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return InvalidData().response()

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # A lost or unobtainable connection is the database's outage, not a bug: 503, not 500.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        error = ServiceUnavailable()
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    app.add_exception_handler(psycopg.OperationalError, _unavailable)
    app.add_exception_handler(PoolTimeout, _unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = _http_error(request, exc)
        response = error.response()
        response.status_code = exc.status_code
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ApiError().response()
