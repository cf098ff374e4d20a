"""The OpenAPI document as the contract, and Swagger UI served from the app itself (works offline).

FastAPI lists a 422 for every operation with parameters; this API answers validation errors with 400
in the spec's body, so the document says 400 instead (api/errors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from swagger_ui_bundle import swagger_ui_path

from api.errors import error_responses

DOCS_PATH = "/api-docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
OPENAPI_PATH = "/api/openapi.json"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_REF = "#/components/schemas/{model}"
# Models that routes reading their own bodies name in `openapi_extra` (schema_ref): FastAPI only
# lists the models of declared parameters, so these are added to the document's components.
_REFERENCED: dict[str, type[BaseModel]] = {}


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    """A `$ref` to `model` for a route's `openapi_extra`; the model joins the document's components."""
    _REFERENCED[model.__name__] = model
    return {"$ref": _REF.format(model=model.__name__)}


def _add_referenced(components: dict[str, Any]) -> None:
    for name, model in _REFERENCED.items():
        if name not in components:
            schema = model.model_json_schema(ref_template=_REF)
            for nested, definition in schema.pop("$defs", {}).items():
                components.setdefault(nested, definition)
            components[name] = schema


def _unique_ids(operations: list[tuple[str, dict[str, Any]]]) -> None:
    """Endpoints of two domains may share a name (`collection_report`): those ids get the domain,
    the path's first segment after /api (`nbfc_collection_report`)."""
    seen: dict[str, int] = {}
    for _, operation in operations:
        seen[operation["operationId"]] = seen.get(operation["operationId"], 0) + 1
    for path, operation in operations:
        if seen[operation["operationId"]] > 1:
            domain = path.removeprefix("/api/").split("/", 1)[0].replace("-", "_")
            operation["operationId"] = f"{domain}_{operation['operationId']}"


def _as_contract(schema: dict[str, Any]) -> None:
    """422 → the spec's 400 on every operation; drop FastAPI's validation-error schemas; unique ids."""
    bad_request = error_responses(400)[400]
    operations = []
    for path, item in schema.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            operations.append((path, operation))
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": bad_request["description"],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                }
    _unique_ids(operations)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    _add_referenced(components)


def operation_id(route: APIRoute) -> str:
    """An operation's id is its endpoint's name (`list_batteries`): the function names of generated
    clients (FastAPI's default appends the path and method). Made unique by `_unique_ids`."""
    return route.name


def contract_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`: FastAPI's document (kept until routes change), as the contract."""

    def openapi() -> dict[str, Any]:
        schema = FastAPI.openapi(app)
        _as_contract(schema)  # idempotent, and cheap next to building the document
        return schema

    return openapi


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /api-docs, its assets from the swagger-ui-bundle package (no CDN)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_path), name="swagger-ui-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_PATH,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            # No validator badge: it would send the document's address to swagger.io (and fail offline).
            swagger_ui_parameters={
                "persistAuthorization": True,
                "displayRequestDuration": True,
                "validatorUrl": None,
            },
        )
