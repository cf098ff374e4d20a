"""Each analytics endpoint against numbers worked out by hand on a small dealership (conftest.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.analytics.conftest import Shop
from tests.api.conftest import World, bearer


def test_battery_health_by_hand(client: TestClient, shop: Shop, world: World) -> None:
    params = {"from": shop.m1.isoformat(), "to": shop.m2.replace(day=28).isoformat()}
    body = client.get("/api/analytics/battery-health", params=params, headers=bearer(shop.user)).json()
    # 6 batteries: excellent 95, 92 → 93.5; good 80; fair 65; poor 50, 40 → 45
    assert body["fleet_health"] == {
        "excellent": {"count": 2, "percentage": "33.3%", "avg_health": 93.5},
        "good": {"count": 1, "percentage": "16.7%", "avg_health": 80.0},
        "fair": {"count": 1, "percentage": "16.7%", "avg_health": 65.0},
        "poor": {"count": 2, "percentage": "33.3%", "avg_health": 45.0},
    }
    # month 1: (90 + 80) / 2, one ticket; month 2: (70 + 75 + 80) / 3, five tickets
    assert body["health_trends"] == [
        {"month": shop.m1.strftime("%Y-%m"), "avg_health": 85.0, "maintenance_count": 1},
        {"month": shop.m2.strftime("%Y-%m"), "avg_health": 75.0, "maintenance_count": 5},
    ]
    # needing service: 65, 50, 40 (below 70) and 80 (an anomaly); at risk: 92 (30 days to the threshold)
    assert body["predictive_maintenance"] == {
        "batteries_needing_service": 4,
        "estimated_service_cost": 8000,
        "risk_batteries": 1,
    }
    as_admin = client.get(
        "/api/analytics/battery-health",
        params={**params, "dealer_id": shop.dealer["id"]},
        headers=bearer(world.admin),
    ).json()
    assert as_admin == body
    report = client.get("/api/batteries/health-report", headers=bearer(shop.user)).json()
    assert report["predictive_maintenance"] == body["predictive_maintenance"]
    assert report["total_batteries"] == 6 and report["overall_health_score"] == round(
        (95 + 92 + 80 + 65 + 50 + 40) / 6, 1
    )
    only_m2 = client.get(
        "/api/analytics/battery-health", params={"from": shop.m2.isoformat()}, headers=bearer(shop.user)
    ).json()
    assert [t["month"] for t in only_m2["health_trends"]] == [shop.m2.strftime("%Y-%m")]


def test_service_metrics_by_hand(client: TestClient, shop: Shop, world: World) -> None:
    body = client.get("/api/analytics/service-metrics", headers=bearer(shop.user)).json()
    assert body["ticket_metrics"] == {
        "total_tickets": 6,
        "open_tickets": 1,
        "assigned_tickets": 1,
        "in_progress_tickets": 1,
        "resolved_tickets": 2 + 1,  # resolved and closed
    }
    # resolved in 2, 4 and 1 days (mean 2.33); within the 3-day SLA: 2 of 3
    assert body["resolution_times"] == {
        "avg_resolution_time": "2.3 days",
        "fastest_resolution": "1.0 days",
        "slowest_resolution": "4.0 days",
        "sla_compliance": "66.7%",
    }
    one, two = shop.techs["T One"], shop.techs["T Two"]
    assert body["technician_performance"] == [
        {"technician_id": one["id"], "name": "T One", "tickets_resolved": 2,
         "avg_resolution_time": "3.0 days", "customer_satisfaction": 4.0},
        {"technician_id": two["id"], "name": "T Two", "tickets_resolved": 1,
         "avg_resolution_time": "1.0 days", "customer_satisfaction": None},
    ]  # fmt: skip
    assert body["issue_categories"] == {
        "performance": 1,
        "charging": 2,
        "mechanical": 1,
        "electrical": 1,
        "other": 1,
    }
    # the period: only last month's five tickets
    period = client.get(
        "/api/analytics/service-metrics", params={"from": shop.m2.isoformat()}, headers=bearer(shop.user)
    ).json()
    assert (
        period["ticket_metrics"]["total_tickets"] == 5
        and period["resolution_times"]["sla_compliance"] == "50.0%"
    )
    # a technician sees their own
    mine = client.get("/api/analytics/service-metrics", headers=bearer(one)).json()
    assert mine["ticket_metrics"]["total_tickets"] == 2 and [
        t["technician_id"] for t in mine["technician_performance"]
    ] == [one["id"]]
    # another dealer sees none of it
    other = client.get("/api/analytics/service-metrics", headers=bearer(world.dealer_b_user)).json()
    assert (
        other["ticket_metrics"]["total_tickets"] == 0
        and other["resolution_times"]["avg_resolution_time"] is None
    )
    bad = client.get(
        "/api/analytics/service-metrics",
        params={"from": "2024-02-01", "to": "2024-01-01"},
        headers=bearer(shop.user),
    )
    assert bad.status_code == 400
    assert (
        client.get(
            "/api/analytics/service-metrics", params={"from": "2024-13-01"}, headers=bearer(shop.user)
        ).status_code
        == 400
    )


ROUTES = ["dealer-dashboard", "nbfc-portfolio", "collection-report", "battery-health", "service-metrics"]


@pytest.mark.parametrize("route", ROUTES)
def test_dates_outside_1970_to_2200_are_400(client: TestClient, world: World, route: str) -> None:
    path = f"/api/analytics/{route}"
    for params in (
        {"to": "0001-01-01"},
        {"from": "1969-12-31"},
        {"to": "9999-12-31"},
        {"from": "2201-01-01"},
    ):
        answer = client.get(path, params=params, headers=bearer(world.admin))
        assert answer.status_code == 400, (params, answer.text)
        assert set(answer.json()) == {"error", "details", "code"}
    widest = client.get(path, params={"from": "1970-01-01", "to": "2200-12-31"}, headers=bearer(world.admin))
    assert widest.status_code == 200, widest.text


@pytest.mark.parametrize("route", ROUTES)
def test_a_date_that_is_a_number_or_a_timestamp_is_400(client: TestClient, world: World, route: str) -> None:
    """`?to=0` answered 200 as 1970-01-01 (pydantic reads a number as seconds since the epoch); the
    document says a date is YYYY-MM-DD."""
    for params in ({"to": "0"}, {"from": "86400"}, {"to": "2024-01-01T00:00:00"}):
        answer = client.get(f"/api/analytics/{route}", params=params, headers=bearer(world.admin))
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["code"] == "VALIDATION_ERROR"
