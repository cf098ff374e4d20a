"""The finance analytics (dealer dashboard, NBFC portfolio, collection report) against numbers worked
out by hand: interest-free loans made through the finance API, so every EMI is a round figure.

    loan A  12,000 over 12 months (EMI 1,000), disbursed; 3 EMIs due, the last 10 days ago;
            2,000 paid today (EMIs 1 and 2)
    loan B   6,000 over 6 (EMI 1,000), disbursed; 1 EMI due 20 days ago; 400 paid today
    loan C  24,000 over 12 (EMI 2,000), approved, not disbursed; 1 EMI due 3 days ago, paid that day
    D pending, E rejected; A and B were sent to lender L
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.finance.schedule import add_months
from tests import factories
from tests.api.conftest import World, bearer
from tests.api.finance.conftest import apply, backdate, fresh_battery, loan, pay, today


@dataclass
class Book:
    loans: dict[str, dict[str, Any]]
    lender_user: dict[str, Any]
    lender_id: int


@pytest.fixture
def book(client: TestClient, world: World) -> Book:
    loans = {
        "A": loan(client, world, months_ago=3, days_ago=10, amount=12000, tenure=12, rate=0),
        "B": loan(client, world, months_ago=1, days_ago=20, amount=6000, tenure=6, rate=0),
        "C": loan(client, world, months_ago=1, days_ago=3, amount=24000, tenure=12, rate=0),
    }
    for name in ("A", "B"):
        answer = client.put(
            f"/api/finance/applications/{loans[name]['application_id']}/disburse",
            json={"disbursement_date": today().isoformat()},
            headers=bearer(world.admin),
        )
        assert answer.status_code == 200, answer.text
    # disbursing moved the due dates: put A and B back where the story has them
    backdate(world.conn, loans["A"]["id"], add_months(today(), -2) - timedelta(days=10))
    backdate(world.conn, loans["B"]["id"], today() - timedelta(days=20))
    assert pay(client, world, loans["A"]["id"], 2000, "A-1").status_code == 201
    assert pay(client, world, loans["B"]["id"], 400, "B-1").status_code == 201
    paid_on = (today() - timedelta(days=3)).isoformat()
    assert pay(client, world, loans["C"]["id"], 2000, "C-1", paid_on=paid_on).status_code == 201
    apply(client, world, amount=5000, battery=fresh_battery(world))
    rejected = apply(client, world, amount=7000, battery=fresh_battery(world))
    answer = client.put(
        f"/api/finance/applications/{rejected['id']}/approve",
        json={"status": "rejected"},
        headers=bearer(world.admin),
    )
    assert answer.status_code == 200, answer.text
    lender = world.conn.execute(
        """INSERT INTO nbfc_lenders (code, name, webhook_secret) VALUES (%s, 'Lender L', %s) RETURNING id""",
        (factories.unique_serial("L")[:16], "s" * 32),
    ).fetchone()["id"]
    for name in ("A", "B"):
        world.conn.execute("UPDATE loans SET nbfc_id = %s WHERE id = %s", (lender, loans[name]["id"]))
        world.conn.execute(
            "UPDATE finance_applications SET nbfc_id = %s WHERE id = %s",
            (lender, loans[name]["application_id"]),
        )
    lender_user = factories.user(world.conn, "nbfc")
    world.conn.execute("UPDATE users SET nbfc_id = %s WHERE id = %s", (lender, lender_user["id"]))
    return Book(loans, lender_user, lender)


def test_dealer_dashboard_finance_metrics(client: TestClient, world: World, book: Book) -> None:
    body = client.get("/api/analytics/dealer-dashboard", headers=bearer(world.dealer_a_user)).json()
    assert body["finance_metrics"] == {
        "total_applications": 5,
        "approved_applications": 3,
        "disbursed_applications": 2,
        "total_disbursed": 18000,
    }
    # world: consumer A (pending KYC), battery A plus the five fresh ones, all active at 100
    assert body["consumer_metrics"] == {"total_consumers": 1, "verified_consumers": 0, "pending_consumers": 1}
    assert body["battery_metrics"] == {
        "total_batteries": 6,
        "active_batteries": 6,
        "maintenance_batteries": 0,
        "avg_health_score": 100.0,
    }
    assert body["service_metrics"] == {"total_tickets": 0, "resolved_tickets": 0, "avg_resolution_time": None}
    other = client.get("/api/analytics/dealer-dashboard", headers=bearer(world.dealer_b_user)).json()
    assert other["finance_metrics"]["total_applications"] == 0
    as_admin = client.get(
        "/api/analytics/dealer-dashboard",
        params={"dealer_id": world.dealer_a["id"]},
        headers=bearer(world.admin),
    ).json()
    assert as_admin == body
    before = client.get(
        "/api/analytics/dealer-dashboard", params={"to": (today() - timedelta(days=400)).isoformat()},
        headers=bearer(world.dealer_a_user),
    ).json()  # fmt: skip
    assert before["finance_metrics"]["total_applications"] == 0  # none was opened back then


def test_nbfc_portfolio(client: TestClient, world: World, book: Book) -> None:
    body = client.get("/api/analytics/nbfc-portfolio", headers=bearer(world.dealer_a_user)).json()
    assert body["portfolio_summary"] == {
        "total_applications": 5,
        "approval_rate": "60.0%",  # A, B, C of 5
        "disbursement_rate": "40.0%",  # A, B
        "total_disbursed": 18000,
        "avg_loan_amount": 9000,
    }
    month = today().strftime("%Y-%m")
    assert body["monthly_trends"] == [
        {"month": month, "applications": 5, "approvals": 3, "disbursements": 2, "amount": 18000}
    ]
    # running loans with an EMI past due: A and B of 3; EMI amounts collected of those due:
    # (2,000 + 400 + 2,000) of (3,000 + 1,000 + 2,000)
    assert body["risk_metrics"] == {
        "overdue_rate": "66.7%",
        "collection_efficiency": "73.3%",
        "avg_credit_score": None,
    }
    lender = client.get("/api/analytics/nbfc-portfolio", headers=bearer(book.lender_user)).json()
    assert lender["portfolio_summary"]["total_applications"] == 2
    assert lender["risk_metrics"]["overdue_rate"] == "100.0%"  # both of its loans
    assert lender["risk_metrics"]["collection_efficiency"] == "60.0%"  # 2,400 of 4,000
    other_lender = factories.user(world.conn, "nbfc")  # tied to no lender: sees nothing
    empty = client.get("/api/analytics/nbfc-portfolio", headers=bearer(other_lender)).json()
    assert (
        empty["portfolio_summary"]["total_applications"] == 0
        and empty["risk_metrics"]["overdue_rate"] is None
    )
    as_admin = client.get(
        "/api/analytics/nbfc-portfolio", params={"nbfc_id": book.lender_id}, headers=bearer(world.admin)
    ).json()
    assert as_admin == lender


def test_collection_report(client: TestClient, world: World, book: Book) -> None:
    body = client.get("/api/analytics/collection-report", headers=bearer(world.dealer_a_user)).json()
    # due in the last 30 days: A's third EMI (10 days ago), B's first (20), C's first (3, paid)
    assert body["collection_summary"] == {
        "total_emi_due": 3,
        "collected_emi": 1,
        "overdue_emi": 2,
        "collection_rate": "33.3%",
        "total_amount_due": 4000,
        "amount_collected": 2400,
    }
    assert body["daily_collections"] == [
        {
            "date": (today() - timedelta(days=3)).isoformat(),
            "collections": 1,
            "amount": 2000,
            "overdue_collections": 0,
        },
        {"date": today().isoformat(), "collections": 2, "amount": 2400, "overdue_collections": 2},
    ]
    assert body["overdue_analysis"] == {"1-7_days": 0, "8-15_days": 1, "15+_days": 1, "total_overdue": 2}
    lender = client.get("/api/analytics/collection-report", headers=bearer(book.lender_user)).json()
    assert (
        lender["collection_summary"]["total_emi_due"] == 2
        and lender["daily_collections"][0]["amount"] == 2400
    )
    older = client.get(
        "/api/analytics/collection-report",
        params={
            "from": (today() - timedelta(days=60)).isoformat(),
            "to": (today() - timedelta(days=31)).isoformat(),
        },
        headers=bearer(world.dealer_a_user),
    ).json()
    # A's second EMI (a month and 10 days ago), paid today
    assert (
        older["collection_summary"]["total_emi_due"] == 1
        and older["collection_summary"]["collected_emi"] == 1
    )
    assert older["daily_collections"] == []
