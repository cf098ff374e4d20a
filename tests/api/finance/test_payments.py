"""Payments: allocation order, partial, over- and duplicate payments (also racing), late fees,
reversal, closing a loan."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.auth.tokens import Principal
from api.finance import payments
from api.finance.models import PaymentCreate
from tests.api.conftest import World, bearer
from tests.api.finance.conftest import loan, pay
from tests.conftest import make_settings


def _ref() -> str:
    return f"UPI-{uuid.uuid4().hex[:12]}"


def _loan(client: TestClient, world: World, loan_id: int) -> dict:
    return client.get(f"/api/finance/loans/{loan_id}", headers=bearer(world.admin)).json()


def test_oldest_due_first_and_partial(client: TestClient, world: World) -> None:
    made = loan(client, world, months_ago=2, days_ago=5, amount=12000, tenure=12, rate=0)
    assert made["overdue_instalments"] == 2 and made["overdue_amount"] == "2000.00"
    answer = pay(client, world, made["id"], 1500, _ref(), method="upi")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert [(a["emi_number"], a["principal"]) for a in body["payment"]["allocations"]] == [
        (1, "1000.00"),
        (2, "500.00"),
    ]
    assert body["loan"]["overdue_amount"] == "500.00" and body["loan"]["next_due_amount"] == "500.00"
    first, second = _loan(client, world, made["id"])["instalments"][:2]
    assert (first["status"], second["status"], second["outstanding"]) == ("paid", "partial", "500.00")
    overdue = client.get("/api/finance/overdue", headers=bearer(world.dealer_a_user)).json()
    mine = [a for a in overdue["overdue_accounts"] if a["loan_id"] == made["id"]]
    assert [(a["emi_number"], a["outstanding"], a["status"]) for a in mine] == [(2, "500.00", "partial")]


def test_interest_before_principal(client: TestClient, world: World) -> None:
    made = loan(client, world, months_ago=1, amount=12000, tenure=12, rate=12)  # the first EMI due today
    interest = made["instalments"][0]["interest"]
    assert interest == "120.00"
    body = pay(client, world, made["id"], "100.50", _ref()).json()
    (part,) = body["payment"]["allocations"]
    assert (part["interest"], part["principal"]) == ("100.50", "0.00")


def test_overpayment_prepays_keeping_the_emi(client: TestClient, world: World) -> None:
    made = loan(client, world, months_ago=1, amount=12000, tenure=12, rate=12)
    emi = Decimal(made["emi"])
    body = pay(client, world, made["id"], str(emi + 5000), _ref()).json()
    assert body["payment"]["prepaid_principal"] == "5000.00"
    after = _loan(client, world, made["id"])
    assert after["emi"] == made["emi"] and after["remaining_instalments"] < 11
    remaining = [i for i in after["instalments"] if i["status"] != "paid"]
    assert (
        all(Decimal(i["amount"]) == emi for i in remaining[:-1]) and Decimal(remaining[-1]["amount"]) <= emi
    )
    principal_paid = Decimal(made["instalments"][0]["principal"])
    assert Decimal(after["outstanding_principal"]) == 12000 - principal_paid - 5000
    assert sum(Decimal(i["principal"]) for i in remaining) == Decimal(after["outstanding_principal"])
    trail = client.get(f"/api/finance/loans/{made['id']}/audit", headers=bearer(world.admin)).json()
    assert trail[-1]["action"] == "payment_recorded" and trail[-2]["action"] == "schedule_recomputed"
    # reversing it gives the principal back: the instalments not yet due are as long as before
    reversed_ = client.post(
        f"/api/finance/payments/{body['payment']['id']}/reverse",
        headers=bearer(world.dealer_a_user),
        json={"reason": "entered twice"},
    )
    assert reversed_.status_code == 200 and reversed_.json()["payment"]["status"] == "reversed"
    restored = _loan(client, world, made["id"])
    assert restored["outstanding_principal"] == "12000.00"
    assert restored["remaining_instalments"] in (12, 13)  # a rounding residue may add a tiny last one
    assert restored["instalments"][0]["status"] == "pending"


def test_same_reference_is_one_payment(client: TestClient, world: World) -> None:
    made = loan(client, world, months_ago=3, amount=12000, tenure=12, rate=0)
    ref = _ref()
    first = pay(client, world, made["id"], 1000, ref)
    again = pay(client, world, made["id"], "1000.00", ref)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["payment"] == first.json()["payment"]
    other_amount = pay(client, world, made["id"], 999, ref)
    assert other_amount.status_code == 409 and other_amount.json()["code"] == "PAYMENT_REFERENCE_CONFLICT"
    other_loan = loan(client, world, months_ago=1, amount=1200, tenure=12, rate=0)
    assert pay(client, world, other_loan["id"], 1000, ref).status_code == 409
    listed = client.get(f"/api/finance/loans/{made['id']}/payments", headers=bearer(world.admin)).json()
    assert [p["reference"] for p in listed] == [ref]


def test_the_same_reference_racing_from_two_connections(
    client: TestClient, world: World, database_url: str
) -> None:
    made = loan(client, world, months_ago=2, days_ago=1, amount=12000, tenure=12, rate=0)
    settings = make_settings(database_url)
    dealer = world.dealer_a_user
    principal = Principal(user_id=dealer["id"], role="dealer", dealer_id=dealer["dealer_id"])
    body = PaymentCreate(reference=_ref(), amount=Decimal("1500"))

    async def one() -> tuple[dict, bool]:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as c:
            return await payments.record_payment(
                c, principal=principal, settings=settings, loan_id=made["id"], body=body
            )

    async def both() -> list[tuple[dict, bool]]:
        return list(await asyncio.gather(one(), one()))

    results = asyncio.run(both())
    assert sorted(created for _, created in results) == [False, True]
    assert len({r["payment"]["id"] for r, _ in results}) == 1
    count = world.conn.execute("SELECT count(*) AS n FROM loan_payments WHERE loan_id = %s", (made["id"],))
    assert count.fetchone()["n"] == 1
    assert _loan(client, world, made["id"])["overdue_amount"] == "500.00"


def test_more_than_owed_is_refused_and_paying_off_closes(client: TestClient, world: World) -> None:
    made = loan(client, world, months_ago=1, amount=1200, tenure=12, rate=0)
    assert made["payoff_amount"] == "1200.00"
    too_much = pay(client, world, made["id"], "1200.01", _ref())
    assert too_much.status_code == 409 and too_much.json()["code"] == "OVERPAYMENT"
    closed = pay(client, world, made["id"], "1200.00", _ref()).json()
    assert closed["loan"]["status"] == "closed" and closed["loan"]["remaining_instalments"] == 0
    after = pay(client, world, made["id"], 1, _ref())
    assert after.status_code == 409 and after.json()["error"] == "Loan is closed"
    assert pay(client, world, made["id"], 1, _ref(), paid_on="2999-01-01").status_code == 400


def test_a_payment_is_not_dated_before_the_loan_by_the_business_calendar(
    client: TestClient, world: World
) -> None:
    made = loan(client, world, months_ago=1, amount=1200, tenure=12, rate=0)
    # Made at 20:00 UTC on the 10th: the 11th in Asia/Kolkata, whose calendar paid_on is in.
    world.conn.execute("UPDATE loans SET created_at = '2026-06-10 20:00+00' WHERE id = %s", (made["id"],))
    before = pay(client, world, made["id"], 1, _ref(), paid_on="2026-06-10")
    assert before.status_code == 400 and before.json()["error"] == "Invalid fields: paid_on", before.text
    assert pay(client, world, made["id"], 1, _ref(), paid_on="2026-06-11").status_code == 201


def test_late_fee_is_paid_first(client_for, world: World) -> None:
    client = client_for(finance_late_fee=Decimal("50"), finance_late_fee_after_days=3)
    made = loan(client, world, months_ago=1, days_ago=5, amount=1200, tenure=12, rate=0)
    assert made["instalments"][0]["penalty"] == "50.00" and made["overdue_amount"] == "150.00"
    body = pay(client, world, made["id"], 120, _ref()).json()
    (part,) = body["payment"]["allocations"]
    assert (part["penalty"], part["principal"]) == ("50.00", "70.00")
    assert body["loan"]["overdue_amount"] == "30.00"


def test_reversal_reopens_what_it_paid_once(client: TestClient, world: World) -> None:
    made = loan(client, world, months_ago=2, days_ago=1, amount=12000, tenure=12, rate=0)
    body = pay(client, world, made["id"], 2000, _ref()).json()
    assert body["loan"]["overdue_amount"] == "0.00"
    url = f"/api/finance/payments/{body['payment']['id']}/reverse"
    first = client.post(url, headers=bearer(world.admin), json={"reason": "wrong loan"})
    second = client.post(url, headers=bearer(world.admin), json={"reason": "again"})
    assert first.status_code == second.status_code == 200
    assert (
        first.json()["payment"]["reversal_reason"]
        == second.json()["payment"]["reversal_reason"]
        == "wrong loan"
    )
    assert second.json()["loan"]["overdue_amount"] == "2000.00"
    report = client.get("/api/finance/collection-report", headers=bearer(world.dealer_a_user)).json()
    assert body["payment"]["reference"] not in str(report)  # reversed payments are not collections
    assert client.post(url, headers=bearer(world.dealer_b_user), json={"reason": "x"}).status_code == 404
