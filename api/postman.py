"""The OpenAPI document as a Postman collection (format v2.1): a folder per tag, a request per
operation, the base URL and the bearer token as collection variables (`{{baseUrl}}`,
`{{bearerToken}}`), request bodies from the document's examples."""

from __future__ import annotations

import json
from typing import Any

SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
_METHODS = ("get", "put", "post", "patch", "delete")


def _example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A body to start from: the schema's (or its component's) first example."""
    if "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    for option in schema.get("oneOf", ()):
        found = _example(option, components)
        if found is not None:
            return found
    examples = schema.get("examples")
    return examples[0] if examples else None


def _body(operation: dict[str, Any], components: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        media = content["application/json"]
        example = media.get("example", _example(media.get("schema", {}), components))
        return {
            "mode": "raw",
            "raw": json.dumps(example if example is not None else {}, indent=2),
            "options": {"raw": {"language": "json"}},
        }
    if "multipart/form-data" in content:
        fields = content["multipart/form-data"].get("schema", {}).get("properties", {})
        return {"mode": "formdata", "formdata": [_form_field(name, f) for name, f in fields.items()]}
    return None


def _form_field(name: str, field: dict[str, Any]) -> dict[str, Any]:
    if field.get("format") == "binary":
        return {"key": name, "type": "file", "src": []}  # the user picks the file
    return {"key": name, "type": "text", "value": str(field.get("example", ""))}


def _request(path: str, method: str, operation: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    parameters = operation.get("parameters", [])
    segments = [
        f":{segment[1:-1]}" if segment.startswith("{") else segment for segment in path.strip("/").split("/")
    ]
    query = [
        {
            "key": p["name"],
            "value": str(p.get("schema", {}).get("default", "")),
            "description": p.get("description", ""),
            "disabled": not p.get("required", False),
        }
        for p in parameters
        if p["in"] == "query"
    ]
    url: dict[str, Any] = {
        "raw": "{{baseUrl}}/" + "/".join(segments),
        "host": ["{{baseUrl}}"],
        "path": segments,
        "query": query,
        "variable": [
            {"key": p["name"], "value": "", "description": p.get("description", "")}
            for p in parameters
            if p["in"] == "path"
        ],
    }
    request: dict[str, Any] = {
        "method": method.upper(),
        "header": [{"key": "Accept", "value": "application/json"}],
        "url": url,
        "description": operation.get("description", ""),
    }
    if not operation.get("security"):
        request["auth"] = {"type": "noauth"}  # login: no token yet
    body = _body(operation, components)
    if body is not None:
        request["body"] = body
        if body["mode"] == "raw":
            request["header"].append({"key": "Content-Type", "value": "application/json"})
    return {
        "name": operation.get("summary") or f"{method.upper()} {path}",
        "request": request,
        "response": [],
    }


def collection(document: dict[str, Any], *, base_url: str = "http://127.0.0.1:8000") -> dict[str, Any]:
    """A Postman v2.1 collection of every operation of `document`."""
    components = document.get("components", {}).get("schemas", {})
    folders: dict[str, list[dict[str, Any]]] = {t["name"]: [] for t in document.get("tags", [])}
    for path, item in document["paths"].items():
        for method in _METHODS:
            if method in item:
                operation = item[method]
                tag = (operation.get("tags") or ["Other"])[0]
                folders.setdefault(tag, []).append(_request(path, method, operation, components))
    descriptions = {t["name"]: t.get("description", "") for t in document.get("tags", [])}
    return {
        "info": {
            "name": document["info"]["title"],
            "description": document["info"].get("description", ""),
            "version": document["info"].get("version", ""),
            "schema": SCHEMA,
        },
        "auth": {
            "type": "bearer",
            "bearer": [{"key": "token", "value": "{{bearerToken}}", "type": "string"}],
        },
        "variable": [
            {"key": "baseUrl", "value": base_url, "type": "string"},
            {
                "key": "bearerToken",
                "value": "",
                "type": "string",
                "description": "POST /api/auth/verify-otp's token",
            },
        ],
        "item": [
            {"name": name, "description": descriptions.get(name, ""), "item": items}
            for name, items in folders.items()
            if items
        ],
    }
