"""Dependencies shared by the routers: settings, a database connection, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ValidationError

from api.auth.standing import AccountStanding
from api.auth.tokens import InvalidToken, Principal, TokenVerifier
from api.errors import Forbidden, Unauthorized
from api.ratelimit import limit_api
from packfleet.settings import Settings

QueryModel = TypeVar("QueryModel", bound=BaseModel)


async def get_settings(request: Request) -> Settings:  # async: sync deps cost a thread hop
    return request.app.state.settings


async def get_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool


async def get_conn(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in autocommit mode (the API's pool): a read is one round trip, and the
    service function that writes owns its transactions (`async with conn.transaction()`)."""
    async with request.app.state.pool.connection() as conn:
        yield conn


def _token_verifier(request: Request) -> TokenVerifier:
    state = request.app.state
    verifier = getattr(state, "token_verifier", None)
    if verifier is None:
        verifier = state.token_verifier = TokenVerifier(state.settings.require_jwt_secret())
    return verifier


def _standing(request: Request) -> AccountStanding:
    state = request.app.state
    standing = getattr(state, "account_standing", None)
    if standing is None:
        standing = state.account_standing = AccountStanding(
            state.pool, recheck_seconds=state.settings.auth_recheck_seconds
        )
    return standing


class BearerPrincipal(HTTPBearer):
    """The caller, from the `Authorization: Bearer <JWT>` header: 401 without a valid token or for
    an account that no longer stands; then the spec's API limit per user. One dependency that is
    also the OpenAPI security scheme (FastAPI spends ~0.1 ms per dependency per request here)."""

    def __init__(self) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer")

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Valid JWT token is required")
        try:
            principal = _token_verifier(request)(token)
        except InvalidToken:
            raise Unauthorized("Valid JWT token is required", error="Invalid or expired token") from None
        if not await _standing(request).stands(principal):
            raise Unauthorized(
                "Valid JWT token is required", error="Account inactive or changed, sign in again"
            )
        request.state.principal = principal
        await limit_api(request, principal.user_id)
        return principal


def query_model(model: type[QueryModel]) -> Any:
    """A dependency that validates the query string into `model` with pydantic itself: FastAPI
    0.165 re-inspects every parameter's annotation on every request (~15 us per parameter here,
    a quarter of a list request's CPU; bench/api.py). Errors answer 400 like FastAPI's own. Pair
    it with `openapi_extra=query_parameters(model)` so that the parameters stay documented."""

    async def parse(request: Request) -> QueryModel:
        try:
            return model.model_validate(dict(request.query_params))
        except ValidationError as exc:
            errors = [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors) from None

    return Depends(parse)


def query_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI parameters of a query model (see query_model)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        description = field.pop("description", None)
        field.pop("title", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": field}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return {"parameters": parameters}


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]
ConnDep = Annotated[AsyncConnection, Depends(get_conn)]
authenticate = BearerPrincipal()  # also callable directly: api/direct_route.py
CurrentUser = Annotated[Principal, Depends(authenticate)]


def require_roles(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency that lets only these roles through (403 otherwise)."""

    def check(principal: CurrentUser) -> Principal:
        if principal.role not in roles:
            raise Forbidden("Insufficient permissions for this operation")
        return principal

    return check
