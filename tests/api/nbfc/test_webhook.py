"""The NBFC webhook: signature, staleness, replay, the same event twice, bad transitions, and a
sanctioned application becoming a loan; the portfolio computed from the applications."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.finance.schedule import add_months
from tests.api.conftest import World, bearer
from tests.api.finance.conftest import fresh_battery, today
from tests.api.nbfc.conftest import application_status, link, make_lender, signed, submit

URL = "/api/nbfc/webhook-status"


@pytest.fixture
def lender(world: World) -> dict[str, Any]:
    row = make_lender(world.conn)
    link(world.conn, world.nbfc, row)
    return row


@pytest.fixture
def submitted(client: TestClient, world: World, lender: dict[str, Any]) -> dict[str, Any]:
    answer = submit(client, world, lender, fresh_battery(world))
    assert answer.status_code == 200, answer.text
    return answer.json()["application"]


def _count_events(world: World, lender: dict[str, Any]) -> int:
    return world.conn.execute(
        "SELECT count(*) AS n FROM nbfc_webhook_events WHERE nbfc_id = %s", (lender["id"],)
    ).fetchone()["n"]


def test_submit_records_the_application_and_its_call(
    client: TestClient, world: World, lender: dict[str, Any], submitted: dict[str, Any]
) -> None:
    assert submitted["status"] == "submitted" and submitted["nbfc_id"] == lender["id"]
    assert submitted["dealer_id"] == world.dealer_a["id"] and submitted["amount"] == 45000
    call = world.conn.execute(
        "SELECT kind, status, idempotency_key, payload FROM nbfc_outbox WHERE application_id = %s",
        (submitted["id"],),
    ).fetchone()
    assert call["kind"] == "application" and call["status"] == "queued"
    assert call["idempotency_key"] == f"packfleet-application-{submitted['id']}"
    assert call["payload"]["body"]["amount"] == "45000.00"
    assert call["payload"]["path"] == "/applications"  # the address is read when it is sent
    seen = client.get("/api/finance/applications", headers=bearer(world.nbfc)).json()
    assert [a["id"] for a in seen] == [submitted["id"]]  # an NBFC sees only what was sent to it


@pytest.mark.parametrize(
    "problem", ["unsigned", "bad_signature", "wrong_secret", "stale", "future", "unknown"]
)
def test_unauthenticated_webhooks_change_nothing(
    client: TestClient, world: World, lender: dict[str, Any], submitted: dict[str, Any], problem: str
) -> None:
    event = {"applicationId": submitted["id"], "status": "approved"}
    kwargs = signed(lender, event)
    if problem == "unsigned":
        del kwargs["headers"]["X-NBFC-Signature"]
    elif problem == "bad_signature":
        kwargs["headers"]["X-NBFC-Signature"] = "sha256=" + "0" * 64
    elif problem == "wrong_secret":
        kwargs = signed(lender, event, secret="another-secret-of-some-length")
    elif problem == "stale":
        kwargs = signed(lender, event, at=time.time() - 301)
    elif problem == "future":
        kwargs = signed(lender, event, at=time.time() + 310)  # the stamp is whole seconds, rounded down
    else:
        kwargs["headers"]["X-NBFC-Id"] = "NOBODY"
    answer = client.post(URL, **kwargs)
    assert answer.status_code == 401 and answer.json()["code"] == "WEBHOOK_UNAUTHORIZED"
    assert application_status(world.conn, submitted["id"]) == "submitted"
    assert _count_events(world, lender) == 0


def test_sanctioned_becomes_a_loan_once(
    client: TestClient, world: World, lender: dict[str, Any], submitted: dict[str, Any]
) -> None:
    event = {
        "applicationId": submitted["id"],
        "status": "sanctioned",
        "sanctionedAmount": 45000,
        "interestRate": 12.5,
        "emiAmount": 1875,
    }
    first = signed(lender, event, event_id="evt-1")
    answer = client.post(URL, **first)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] and body["message"] == "Webhook processed successfully"
    assert body["application"]["status"] == "approved" and body["application"]["sanctioned_amount"] == 45000
    assert body["application"]["emi_amount"] == 2128.83  # ours (reducing balance), not the lender's flat 1875
    replay = client.post(URL, **first)  # the very same signed request again
    assert replay.status_code == 401
    retry = signed(lender, event, event_id="evt-1", at=time.time() + 1)  # the lender's retry, signed anew
    again = client.post(URL, **retry)
    assert again.status_code == 200 and again.json() == body
    loans = world.conn.execute(
        "SELECT l.id, count(li.id) AS n FROM loans l JOIN loan_instalments li ON li.loan_id = l.id "
        "WHERE l.application_id = %s GROUP BY l.id",
        (submitted["id"],),
    ).fetchall()
    assert [r["n"] for r in loans] == [24]
    assert _count_events(world, lender) == 1
    loan = client.get(f"/api/finance/loans/{loans[0]['id']}", headers=bearer(world.nbfc))
    assert loan.status_code == 200 and loan.json()["emi"] == "2128.83"
    trail = client.get(f"/api/finance/loans/{loans[0]['id']}/audit", headers=bearer(world.admin)).json()
    applied = next(e for e in trail if e["action"] == "nbfc_webhook_applied")
    assert applied["detail"]["emi_differs"] == {"ours": "2128.83", "lender": "1875"}


def test_bad_transition_is_409_and_answered_the_same_again(
    client: TestClient,
    world: World,
    lender: dict[str, Any],
    submitted: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert (
        client.post(
            URL, **signed(lender, {"applicationId": submitted["id"], "status": "rejected"})
        ).status_code
        == 200
    )
    late = {"applicationId": submitted["id"], "status": "approved"}
    with caplog.at_level("WARNING", logger="api.nbfc.service"):
        answer = client.post(URL, **signed(lender, late, event_id="late-1"))
    assert answer.status_code == 409 and answer.json()["error"] == "Application is rejected"
    assert [r.getMessage() for r in caplog.records if r.name == "api.nbfc.service"] == [
        "nbfc webhook rejected"
    ]
    assert world.conn.execute(
        "SELECT count(*) AS n FROM loans WHERE application_id = %s", (submitted["id"],)
    ).fetchone() == {"n": 0}
    again = client.post(URL, **signed(lender, late, event_id="late-1", at=time.time() + 1))
    assert again.status_code == 409 and again.json() == answer.json()
    assert application_status(world.conn, submitted["id"]) == "rejected"
    outcome = world.conn.execute(
        "SELECT outcome, http_status FROM nbfc_webhook_events WHERE nbfc_id = %s AND event_key = 'late-1'",
        (lender["id"],),
    ).fetchone()
    assert outcome == {"outcome": "rejected", "http_status": 409}


def test_disbursed_moves_the_schedule(
    client: TestClient, world: World, lender: dict[str, Any], submitted: dict[str, Any]
) -> None:
    sid = submitted["id"]
    client.post(URL, **signed(lender, {"applicationId": sid, "status": "under_review"}))
    approved = client.post(
        URL, **signed(lender, {"applicationId": sid, "status": "approved", "tenureMonths": 12})
    ).json()
    before = client.get(
        f"/api/finance/loans/{approved['application']['loan_id']}", headers=bearer(world.admin)
    ).json()
    assert before["instalments"][0]["due_date"] == str(add_months(today(), 1))  # from the approval
    on = today() + timedelta(days=3)
    answer = client.post(
        URL, **signed(lender, {"applicationId": sid, "status": "disbursed", "disbursementDate": str(on)})
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["application"]["status"] == "disbursed"
    loan_id = answer.json()["application"]["loan_id"]
    loan = client.get(f"/api/finance/loans/{loan_id}", headers=bearer(world.admin)).json()
    assert loan["disbursement_date"] == str(on) and len(loan["instalments"]) == 12
    assert [i["due_date"] for i in loan["instalments"]] == [str(add_months(on, n)) for n in range(1, 13)]


def test_another_lenders_application_is_404_and_a_bad_body_400(
    client: TestClient, world: World, lender: dict[str, Any], submitted: dict[str, Any]
) -> None:
    other = make_lender(world.conn)
    answer = client.post(URL, **signed(other, {"applicationId": submitted["id"], "status": "approved"}))
    assert answer.status_code == 404
    bad = client.post(URL, **signed(lender, {"applicationId": submitted["id"], "status": "maybe"}))
    assert bad.status_code == 400
    assert application_status(world.conn, submitted["id"]) == "submitted"


def test_portfolio_from_the_applications(
    client: TestClient, world: World, lender: dict[str, Any], submitted: dict[str, Any]
) -> None:
    second = submit(client, world, lender, fresh_battery(world), amount=30000, interest_rate=10).json()[
        "application"
    ]
    client.post(URL, **signed(lender, {"applicationId": submitted["id"], "status": "approved"}))
    client.post(URL, **signed(lender, {"applicationId": submitted["id"], "status": "disbursed"}))
    client.post(URL, **signed(lender, {"applicationId": second["id"], "status": "rejected"}))
    body = client.get("/api/nbfc/portfolio", headers=bearer(world.nbfc)).json()
    assert body["portfolio_summary"] == {
        "total_applications": 2,
        "approved_count": 1,
        "disbursed_count": 1,
        "rejected_count": 1,
        "total_disbursed": 45000,
        "avg_interest_rate": 12.5,
    }
    assert body["portfolio_health"] == {"approval_rate": "50.0", "disbursement_rate": "50.0"}
    (month,) = body["monthly_trend"]
    assert month == {"month": str(today().replace(day=1)), "applications": 2, "amount_disbursed": 45000}
    other = client.get("/api/nbfc/portfolio", headers=bearer(world.dealer_b_user)).json()
    assert other["portfolio_summary"]["total_applications"] == 0
    assert client.get("/api/nbfc/portfolio", headers=bearer(world.consumer_a_user)).status_code == 403
