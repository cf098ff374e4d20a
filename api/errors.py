"""API errors, all answered in the spec's body `{"error", "details", "code"}`.

    ApiError                 any error the API answers on purpose
    ├── BadRequest           400 (validation errors too)
    ├── Unauthorized         401 missing, malformed, forged or expired token
    ├── Forbidden            403 the role may not do this
    ├── NotFound             404 absent, or another dealer's (we do not say which)
    ├── Conflict             409 already exists / wrong state
    ├── PayloadTooLarge      413 a body or upload over its cap
    ├── TooManyRequests      429 with Retry-After
    └── ServiceUnavailable   503 with Retry-After: the database cannot be reached just now

Everything else is a 500 whose details never leak internals.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

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


class BadRequest(ApiError):
    status, code, error = 400, "VALIDATION_ERROR", "Invalid request"


class InvalidData(ApiError):
    """Input the database cannot hold (a NUL character, a number out of range): the caller's error."""

    status, code, error = 400, "INVALID_DATA", "Invalid data"

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


class Conflict(ApiError):
    status, code, error = 409, "CONFLICT", "Conflict"


class PayloadTooLarge(ApiError):
    status, code, error = 413, "PAYLOAD_TOO_LARGE", "Payload too large"


class TooManyRequests(ApiError):
    status, code, error = 429, "RATE_LIMITED", "Rate limit exceeded"


class ErrorBody(BaseModel):
    """The spec's error body, the same for every route and every error status."""

    error: str = Field(examples=["Battery not found"])
    details: Any = Field(
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
    405: "Method not allowed on this path",
    409: "Conflict with the current state (`error` names it)",
    413: "Body or upload larger than its cap",
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


_STATUS_NAMES = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in errors]


def install_error_handlers(app: FastAPI) -> None:
    """Map every error the app can raise to the spec's body."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(list(exc.errors()))
        fields = ", ".join(sorted({d["field"] for d in details}))
        body = {"error": f"Invalid fields: {fields}", "details": details, "code": "VALIDATION_ERROR"}
        return JSONResponse(body, status_code=400)

    @app.exception_handler(psycopg.DataError)
    async def _data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        log.info("data error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse(InvalidData().body(), status_code=InvalidData.status)

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # A lost or unobtainable connection is the database's outage, not a bug: 503, not 500.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        error = ServiceUnavailable()
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    app.add_exception_handler(psycopg.OperationalError, _unavailable)
    app.add_exception_handler(PoolTimeout, _unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _STATUS_NAMES.get(exc.status_code, ApiError)
        body = {"error": kind.error, "details": exc.detail, "code": kind.code}
        if kind is ApiError:
            body["code"] = f"HTTP_{exc.status_code}"
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = {"error": "Internal server error", "details": None, "code": "INTERNAL_ERROR"}
        return JSONResponse(body, status_code=500)
