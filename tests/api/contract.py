"""The contract's vocabulary for tests: the OpenAPI document's schema of an answer, validation against
it, and the example responses of the user's two spec documents (`shared/spec/`)."""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from api.app import create_app
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]


@cache
def document() -> dict[str, Any]:
    """The app's OpenAPI document (every router on this branch, the other domains' as they land)."""
    return create_app(make_settings("postgresql://unused/unused")).openapi()


def shape(path: str) -> str:
    """A path with its parameters' names dropped: `/api/consumers/{id}/kyc` → `/api/consumers/{}/kyc`."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def matching_url(path: str) -> str:
    """A URL the route of `path` matches, whatever its parameters' values: a uuid where the path
    takes one, a number for another id, the parameter's name otherwise (a serial)."""
    return re.sub(
        r"\{([^}]*)\}",
        lambda m: (
            str(uuid.UUID(int=1))
            if m[1] in ("command_id", "bulk_id")
            else "1"
            if m[1].endswith("_id")
            else m[1]
        ),
        path,
    )


def operation(method: str, path: str) -> dict[str, Any] | None:
    """The document's operation for a method and a path (parameter names may differ)."""
    for candidate, item in document()["paths"].items():
        if shape(candidate) == shape(path) and method.lower() in item:
            return item[method.lower()]  # type: ignore[no-any-return]
    return None


def answer_schema(op: dict[str, Any], status: int) -> dict[str, Any] | None:
    """The JSON schema of the answer with this status, or None when the document has none."""
    response = op["responses"].get(str(status))
    if response is None:
        return None
    return response.get("content", {}).get("application/json", {}).get("schema")  # type: ignore[no-any-return]


def component(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema itself, or the component its `$ref` names."""
    ref = schema.get("$ref")
    return document()["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def request_example(op: dict[str, Any]) -> Any:
    """The JSON body the document shows for an operation (its own example, or its model's)."""
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    if "example" in content:
        return content["example"]
    return (component(content["schema"]).get("examples") or [None])[0]


def problems(schema: dict[str, Any], instance: Any) -> list[str]:
    """Why `instance` does not conform to `schema` (its `$ref`s resolved in the document); formats
    (date-time, uuid) are checked too."""
    root = {**schema, "components": document()["components"]}
    validator = Draft202012Validator(root, format_checker=FormatChecker())
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in _leaves(validator.iter_errors(instance))
    )


def _leaves(errors: Any) -> Any:
    """The errors themselves; for an `anyOf` (a field that may also be null), those of its closest
    branch, so that a missing field is named rather than "not valid under any of the given schemas"."""
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and error.context:
            branches: dict[Any, list[Any]] = {}
            for sub in error.context:
                branches.setdefault(sub.schema_path[0], []).append(sub)
            # the closest branch: fewest errors, and more than a wrong type
            yield from _leaves(
                min(branches.values(), key=lambda e: (len(e), all(x.validator == "type" for x in e)))
            )
        else:
            yield error


@dataclass(frozen=True)
class Example:
    """An example response of a spec document."""

    source: str
    title: str
    method: str
    path: str
    body: Any

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def spec_dir() -> Path | None:
    """`shared/spec/` beside the repository (or a parent of it), or PACKFLEET_SPEC_DIR."""
    if os.environ.get("PACKFLEET_SPEC_DIR"):
        return Path(os.environ["PACKFLEET_SPEC_DIR"])
    for parent in REPO.parents:
        if (parent / "shared" / "spec").is_dir():
            return parent / "shared" / "spec"
    return None


def _json(text: str) -> Any:
    # The Markdown examples carry `// or ...` comments after values, as JavaScript would.
    return json.loads(re.sub(r"\s//[^\n]*", "", text))


def _markdown_examples(path: Path) -> list[Example]:
    """`### **Title**` sections with an ```http METHOD /path``` block and a **Response:** block."""
    found: list[Example] = []
    for section in re.split(r"\n### ", path.read_text()):
        title = section.split("\n", 1)[0].strip("* ")
        route = re.search(r"```http\n(GET|POST|PUT|PATCH|DELETE) (/\S+)\n```", section)
        answer = re.search(r"\*\*Response:\*\*\s*```json\n(.*?)\n```", section, re.S)
        if route and answer:
            found.append(Example(path.name, title, route[1], route[2], _json(answer[1])))
    return found


def _rst_examples(path: Path) -> list[Example]:
    """`METHOD `/path`` sections with an "Example Response (JSON)" code block (paths under /api)."""
    found: list[Example] = []
    for section in re.split(r"\n(?=(?:GET|POST|PUT|PATCH|DELETE) `/)", path.read_text()):
        route = re.match(r"(GET|POST|PUT|PATCH|DELETE) `(/[^`]*)`", section)
        answer = re.search(
            r"\*\*Example Response \(JSON\):\*\*\s*\.\. code-block:: json\n\n(.*?)(?:\n\S|\Z)", section, re.S
        )
        if route and answer:
            title = re.search(r"\*\*Summary:\*\* (.*)", section)
            body = json.loads(re.sub(r"(?m)^   ", "", answer[1]))
            found.append(
                Example(path.name, title[1] if title else route[0], route[1], "/api" + route[2], body)
            )
    return found


def spec_examples() -> list[Example]:
    folder = spec_dir()
    if folder is None:
        return []
    return _markdown_examples(folder / "ienerzy-bms-api.md") + _rst_examples(
        folder / "irasus-battery-pack-api.rst"
    )
