"""The whole lender flow over the network: submit → the outbox worker calls the simulated lender
(through its outage, with one application there however often it is called) → the lender's signed
webhooks approve and disburse → a loan with its schedule; collection reports the same way."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from nbfc_sim.lender import LenderOptions, lender_today
from tests.api.conftest import World, bearer
from tests.api.finance.conftest import fresh_battery, loan, pay, today
from tests.api.nbfc.conftest import Stack, application_status, submit
from tests.services import wait_for


def test_submitted_application_is_decided_by_the_lender(stack: Stack, world: World) -> None:
    answer = submit(stack.client, world, stack.lender_row, fresh_battery(world))
    assert answer.status_code == 200, answer.text
    application_id = answer.json()["application"]["id"]
    wait_for(lambda: application_status(world.conn, application_id) == "disbursed", timeout=30)
    taken = [
        a for a in stack.lender.applications.values() if a["submission"].application_id == application_id
    ]
    assert len(taken) == 1  # retries after its outage were the same call (Idempotency-Key)
    call = world.conn.execute(
        "SELECT status, attempts, provider_message_id FROM nbfc_outbox WHERE application_id = %s",
        (application_id,),
    ).fetchone()
    assert call["status"] == "sent" and call["provider_message_id"] == taken[0]["receipt"]["reference"]
    row = stack.client.get(f"/api/finance/applications/{application_id}", headers=bearer(world.admin)).json()
    loan = stack.client.get(f"/api/finance/loans/{row['loan_id']}", headers=bearer(world.admin)).json()
    assert loan["emi"] == "2128.83" and len(loan["instalments"]) == 24
    assert loan["disbursement_date"] == str(today())
    events = [w["status"] for w in stack.lender.webhooks if w["applicationId"] == application_id]
    assert events == ["approved", "disbursed"]


def test_the_lenders_dates_are_in_its_own_time_zone() -> None:
    # CI at 20:00 UTC: the simulated lender disbursed "yesterday" by the machine's calendar, before
    # the application was made by the business's (Asia/Kolkata), and the webhook was refused.
    options = LenderOptions(code="L", secret="s", webhook_url="http://127.0.0.1:9")
    assert lender_today(options, datetime(2026, 12, 2, 18, 29, tzinfo=UTC)) == date(2026, 12, 2)
    assert lender_today(options, datetime(2026, 12, 2, 20, 0, tzinfo=UTC)) == date(2026, 12, 3)


def test_collection_report_reaches_the_lender_once(stack: Stack, world: World) -> None:
    lender_id = stack.lender_row["id"]
    made = loan(stack.client, world, months_ago=1, amount=1200, tenure=12, rate=0)
    world.conn.execute("UPDATE loans SET nbfc_id = %s WHERE id = %s", (lender_id, made["id"]))
    assert pay(stack.client, world, made["id"], 100, f"R-{uuid.uuid4().hex[:8]}").status_code == 201
    data = {"total_collections": 1, "amount_collected": 100, "overdue_count": 0}
    body = {"report_date": str(today()), "nbfc_id": lender_id, "collection_data": data}
    url = "/api/nbfc/collection-report?wait=20"
    first = stack.client.post(url, headers=bearer(world.dealer_a_user), json=body)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["nbfc_response"]["status"] == "submitted" and answer["nbfc_response"][
        "report_id"
    ].startswith("RPT")
    assert answer["report"]["collection_data"] == (
        '{"total_collections":1,"amount_collected":100.00,"overdue_count":0}'
    )
    assert answer["report"]["dealer_id"] == world.dealer_a["id"]
    reports = len(stack.lender.reports)
    again = stack.client.post(
        url, headers=bearer(world.dealer_a_user), json={**body, "collection_data": None}
    )
    assert again.json()["report"]["id"] == answer["report"]["id"]
    assert again.json()["nbfc_response"]["report_id"] == answer["nbfc_response"]["report_id"]
    assert len(stack.lender.reports) == reports
    wrong = {**body, "collection_data": {"total_collections": 5, "amount_collected": 100, "overdue_count": 0}}
    mismatch = stack.client.post(url, headers=bearer(world.dealer_a_user), json=wrong)
    assert mismatch.status_code == 409 and mismatch.json()["code"] == "COLLECTION_DATA_MISMATCH"
