"""Authorization cases of the NBFC Integration routes: dealers (and admins) submit applications and
collection reports for their own; an NBFC reads the portfolio of what was sent to it; the webhook is
authenticated by the lender's signature, whoever's token comes with it."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi.testclient import TestClient

from schemas.lender import EVENT_HEADER, LENDER_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests import factories
from tests.api.authz import Case, statuses
from tests.api.authz_finance import _application, _lender
from tests.api.conftest import World
from tests.api.finance.conftest import today

PREFIXES = ("/api/nbfc",)


def _signed_approval(w: World, c: TestClient) -> tuple[str, dict[str, Any]]:
    application = _application(w, c, decide=False)
    lender = w.conn.execute(
        "SELECT l.* FROM nbfc_lenders l JOIN finance_applications a ON a.nbfc_id = l.id WHERE a.id = %s",
        (application["id"],),
    ).fetchone()
    body = json.dumps({"applicationId": application["id"], "status": "approved"}).encode()
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        LENDER_HEADER: lender["code"],
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(lender["webhook_secret"], stamp, body),
        EVENT_HEADER: str(uuid.uuid4()),
    }
    return "/api/nbfc/webhook-status", {"content": body, "headers": headers}


def _portfolio_scoped(w: World, role: str, body: Any) -> None:
    if role == "other_dealer":
        assert body["portfolio_summary"]["total_applications"] == 0
    if role == "nbfc":
        assert body["portfolio_summary"]["total_applications"] == 1  # its own lender's only


def _own_report(w: World, role: str, body: Any) -> None:
    own = w.dealer_b["id"] if role == "other_dealer" else w.dealer_a["id"]
    assert body["report"]["dealer_id"] == own


CASES: dict[tuple[str, str], Case] = {
    ("POST", "/api/nbfc/submit-application"): Case(
        lambda w, c: (
            "/api/nbfc/submit-application",
            {
                "json": {
                    "consumer_id": w.consumer_a["id"],
                    "battery_id": factories.battery(w.conn, dealer_id=w.dealer_a["id"])["id"],
                    "amount": 45000,
                    "tenure_months": 24,
                    "interest_rate": 12.5,
                    "nbfc_id": _lender(w),
                }
            },
        ),
        statuses(200, 200, 404, 403),
    ),
    ("POST", "/api/nbfc/webhook-status"): Case(_signed_approval, statuses(200, 200, 200, 200, 200, 200)),
    ("GET", "/api/nbfc/portfolio"): Case(
        lambda w, c: (_application(w, c, decide=False), ("/api/nbfc/portfolio", {}))[1],
        statuses(200, 200, 200, 403, 403, 200),
        _portfolio_scoped,
    ),
    ("POST", "/api/nbfc/collection-report"): Case(
        lambda w, c: (
            "/api/nbfc/collection-report?wait=0",
            {"json": {"report_date": str(today()), "nbfc_id": _lender(w), "dealer_id": w.dealer_a["id"]}},
        ),
        # a dealer names itself only (dealer_id of another is 403); admins name the dealer
        statuses(200, 200, 403, 403),
        _own_report,
    ),
}
