"""Authorization cases of the Finance Management routes: a dealer its own applications, loans,
payments and reports (another dealer's are not found); a consumer reads their own; an NBFC the ones
sent to it; admins decide and disburse (as does the NBFC for what was sent to it)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests import factories
from tests.api.authz import Case, statuses
from tests.api.conftest import World, bearer
from tests.api.finance.conftest import today

PREFIXES = ("/api/finance",)

READ_SENT = statuses(200, 200, 404, 200, 403, 200)  # dealer A's, owned by the consumer, sent to the NBFC
LISTED = statuses(200, 200, 200, 200, 403, 200)


def _lender(w: World) -> int:
    """A lender the World's NBFC user acts for."""
    row = w.conn.execute(
        """INSERT INTO nbfc_lenders (code, name, api_base_url, webhook_secret)
           VALUES (%s, 'Authz Finance', 'http://127.0.0.1:9', %s) RETURNING id""",
        (f"Z{uuid.uuid4().hex[:12]}", uuid.uuid4().hex * 2),
    ).fetchone()
    w.conn.execute("UPDATE users SET nbfc_id = %s WHERE id = %s", (row["id"], w.nbfc["id"]))
    return row["id"]


def _application(w: World, c: TestClient, *, decide: bool, overdue: bool = False) -> dict[str, Any]:
    """Dealer A's application (on a new battery of consumer A) sent to the NBFC: `submitted`, or
    approved with its loan (its first EMI overdue when asked)."""
    battery = factories.battery(w.conn, dealer_id=w.dealer_a["id"], owner_id=w.consumer_a["id"])
    lender = _lender(w)
    row = w.conn.execute(
        """INSERT INTO finance_applications (dealer_id, consumer_id, battery_id, amount, tenure_months,
               interest_rate, status, nbfc_id, submitted_at, created_by, created_at)
           VALUES (%s, %s, %s, 12000, 12, 12, 'submitted', %s, now(), 'test', now() - interval '60 days')
           RETURNING id""",
        (w.dealer_a["id"], w.consumer_a["id"], battery["id"], lender),
    ).fetchone()
    if not decide:
        return {"id": row["id"], "battery": battery}
    answer = c.put(
        f"/api/finance/applications/{row['id']}/approve", headers=bearer(w.admin), json={"status": "approved"}
    )
    assert answer.status_code == 200, answer.text
    loan_id = answer.json()["loan_id"]
    if overdue:
        w.conn.execute("UPDATE loan_instalments SET due_date = due_date - 45 WHERE loan_id = %s", (loan_id,))
        w.conn.execute("UPDATE loans SET created_at = now() - interval '60 days' WHERE id = %s", (loan_id,))
    return {"id": row["id"], "loan_id": loan_id, "battery": battery}


def _payment(w: World, c: TestClient) -> int:
    loan_id = _application(w, c, decide=True, overdue=True)["loan_id"]
    answer = c.post(
        f"/api/finance/loans/{loan_id}/payments",
        headers=bearer(w.admin),
        json={"reference": f"A-{uuid.uuid4().hex[:10]}", "amount": 100},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["payment"]["id"]


def _no_foreign(key: str) -> Any:
    """A list check: the other dealer sees none of dealer A's rows (nor A any of B's)."""

    def check(w: World, role: str, body: Any) -> None:
        rows = body if isinstance(body, list) else body[key]
        dealers = {r["dealer_id"] for r in rows}
        if role == "other_dealer":
            assert dealers <= {w.dealer_b["id"]}
        if role in ("dealer", "consumer"):
            assert dealers <= {w.dealer_a["id"]}
        if role == "consumer":
            assert {r["consumer_id"] for r in rows} <= {w.consumer_a["id"]}

    return check


def _own_disables(w: World, role: str, body: Any) -> None:
    if role == "other_dealer":
        assert body["disabled_count"] == 0 and body["deferred"] == []


CASES: dict[tuple[str, str], Case] = {
    ("POST", "/api/finance/applications"): Case(
        lambda w, c: (
            "/api/finance/applications",
            {
                "json": {
                    "consumer_id": w.consumer_a["id"],
                    "battery_id": factories.battery(w.conn, dealer_id=w.dealer_a["id"])["id"],
                    "amount": 45000,
                    "tenure_months": 24,
                    "interest_rate": 12.5,
                }
            },
        ),
        statuses(201, 201, 404, 403),
    ),
    ("GET", "/api/finance/applications"): Case(
        lambda w, c: (_application(w, c, decide=False), ("/api/finance/applications", {}))[1],
        LISTED,
        _no_foreign("applications"),
    ),
    ("GET", "/api/finance/applications/{application_id}"): Case(
        lambda w, c: (f"/api/finance/applications/{_application(w, c, decide=False)['id']}", {}), READ_SENT
    ),
    ("PUT", "/api/finance/applications/{application_id}/approve"): Case(
        lambda w, c: (
            f"/api/finance/applications/{_application(w, c, decide=False)['id']}/approve",
            {"json": {"status": "approved"}},
        ),
        statuses(200, 403, 403, 403, 403, 200),
    ),
    ("PUT", "/api/finance/applications/{application_id}/disburse"): Case(
        lambda w, c: (
            f"/api/finance/applications/{_application(w, c, decide=True)['id']}/disburse",
            {"json": {"disbursement_date": str(today())}},
        ),
        statuses(200, 403, 403, 403, 403, 200),
    ),
    ("GET", "/api/finance/overdue"): Case(
        lambda w, c: (_application(w, c, decide=True, overdue=True), ("/api/finance/overdue", {}))[1],
        LISTED,
        _no_foreign("overdue_accounts"),
    ),
    ("POST", "/api/finance/auto-disable"): Case(
        lambda w, c: (
            _application(w, c, decide=True, overdue=True),
            ("/api/finance/auto-disable", {"json": {}}),
        )[1],
        statuses(200, 200, 200, 403),
        _own_disables,
    ),
    ("GET", "/api/finance/collection-report"): Case(
        lambda w, c: ("/api/finance/collection-report", {}), statuses(200, 200, 200, 403, 403, 200)
    ),
    ("GET", "/api/finance/loans"): Case(
        lambda w, c: (_application(w, c, decide=True), ("/api/finance/loans", {}))[1],
        LISTED,
        _no_foreign("loans"),
    ),
    ("GET", "/api/finance/loans/{loan_id}"): Case(
        lambda w, c: (f"/api/finance/loans/{_application(w, c, decide=True)['loan_id']}", {}), READ_SENT
    ),
    ("GET", "/api/finance/loans/{loan_id}/audit"): Case(
        lambda w, c: (f"/api/finance/loans/{_application(w, c, decide=True)['loan_id']}/audit", {}), READ_SENT
    ),
    ("GET", "/api/finance/loans/{loan_id}/payments"): Case(
        lambda w, c: (f"/api/finance/loans/{_application(w, c, decide=True)['loan_id']}/payments", {}),
        READ_SENT,
    ),
    ("POST", "/api/finance/loans/{loan_id}/payments"): Case(
        lambda w, c: (
            f"/api/finance/loans/{_application(w, c, decide=True, overdue=True)['loan_id']}/payments",
            {"json": {"reference": f"P-{uuid.uuid4().hex[:10]}", "amount": 500}},
        ),
        statuses(201, 201, 404, 403, 403, 201),
    ),
    ("POST", "/api/finance/payments/{payment_id}/reverse"): Case(
        lambda w, c: (
            f"/api/finance/payments/{_payment(w, c)}/reverse",
            {"json": {"reason": "entered twice"}},
        ),
        statuses(200, 200, 404, 403, 403, 200),
    ),
}
