"""The authorization matrix's vocabulary: a case per route, the expected status per role.

Each domain keeps its cases in a module of its own, `tests/api/authz_<domain>.py`, with `PREFIXES`
(the route prefixes it owns) and `CASES`; `test_authorization.py` collects every such module, so a
route added under an owned prefix without a case fails `test_every_route_has_a_case`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import World

ROLES = ("admin", "dealer", "other_dealer", "consumer", "technician", "nbfc")

Request = tuple[str, dict[str, Any]]  # url, keyword arguments of client.request


@dataclass(frozen=True)
class Case:
    build: Callable[[World, TestClient], Request]
    expect: dict[str, int]
    check: Callable[[World, str, Any], None] | None = None


def statuses(
    admin: int, dealer: int, other: int, consumer: int, technician: int = 403, nbfc: int = 403
) -> dict[str, int]:
    return dict(zip(ROLES, (admin, dealer, other, consumer, technician, nbfc), strict=True))


READ_OWN = statuses(200, 200, 404, 200)  # an object of dealer A, owned by the consumer
WRITE_OWN = statuses(200, 200, 404, 403)
LIST = statuses(200, 200, 200, 200)
