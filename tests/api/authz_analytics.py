"""Authorization cases of the Analytics & Reporting routes (collected by test_authorization.py).

A dealer's figures are its own: dealer B never counts dealer A's batteries or tickets.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.authz import Case, statuses
from tests.api.authz_service import _ticket
from tests.api.conftest import World
from tests.api.finance.conftest import apply

PREFIXES = ("/api/analytics",)


def _with_a_ticket(w: World, c: TestClient, url: str) -> tuple[str, dict[str, Any]]:
    _ticket(w, "resolved")
    return url, {}


def _with_an_application(w: World, c: TestClient, url: str) -> tuple[str, dict[str, Any]]:
    apply(c, w)
    return url, {}


def _own_applications_only(w: World, role: str, body: Any) -> None:
    summary = body.get("finance_metrics") or body["portfolio_summary"]
    expected = {"dealer": 1, "other_dealer": 0, "nbfc": 0}  # the world's NBFC was sent nothing
    if role in expected:
        assert summary["total_applications"] == expected[role]


def _own_fleet_only(w: World, role: str, body: Any) -> None:
    counted = sum(band["count"] for band in body["fleet_health"].values())
    if role in ("dealer", "other_dealer"):
        assert counted == 1  # its one battery


def _own_tickets_only(w: World, role: str, body: Any) -> None:
    total = body["ticket_metrics"]["total_tickets"]
    if role == "other_dealer":
        assert total == 0
    if role in ("dealer", "technician"):
        assert total == 1


FINANCE_READ = statuses(200, 200, 200, 403, 403, 200)

CASES: dict[tuple[str, str], Case] = {
    ("GET", "/api/analytics/dealer-dashboard"): Case(
        lambda w, c: _with_an_application(w, c, "/api/analytics/dealer-dashboard"),
        statuses(200, 200, 200, 403),
        _own_applications_only,
    ),
    ("GET", "/api/analytics/nbfc-portfolio"): Case(
        lambda w, c: _with_an_application(w, c, "/api/analytics/nbfc-portfolio"),
        FINANCE_READ,
        _own_applications_only,
    ),
    ("GET", "/api/analytics/collection-report"): Case(
        lambda w, c: ("/api/analytics/collection-report", {}), FINANCE_READ
    ),
    ("GET", "/api/analytics/battery-health"): Case(
        lambda w, c: _with_a_ticket(w, c, "/api/analytics/battery-health"),
        statuses(200, 200, 200, 403),
        _own_fleet_only,
    ),
    ("GET", "/api/analytics/service-metrics"): Case(
        lambda w, c: _with_a_ticket(w, c, "/api/analytics/service-metrics"),
        statuses(200, 200, 200, 403, 200),
        _own_tickets_only,
    ),
}
