"""Applications: submit, scoping, allowed transitions only, the loan and schedule at approval,
disbursement moving the due dates, consumer finance."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient

from api.finance.schedule import add_months
from tests.api.conftest import World, bearer
from tests.api.contract import component, document
from tests.api.finance.conftest import apply, approve, fresh_battery, today


def test_submit_is_pending_in_the_spec_shape(client: TestClient, world: World) -> None:
    body = apply(client, world)
    assert body["status"] == "pending"
    assert body["amount"] == 45000 and body["interest_rate"] == 12.5 and body["tenure_months"] == 24
    assert {"id", "consumer_id", "battery_id", "created_at"} <= set(body)
    assert body["created_at"].endswith("Z")
    again = client.post(
        "/api/finance/applications",
        headers=bearer(world.dealer_a_user),
        json={
            "consumer_id": world.consumer_a["id"],
            "battery_id": world.battery_a["id"],
            "amount": 1000,
            "tenure_months": 6,
            "interest_rate": 10,
        },
    )
    assert again.status_code == 409 and again.json()["error"] == "Application already open"


def test_bad_input_is_a_400_naming_the_field(client: TestClient, world: World) -> None:
    for field, value in [
        ("amount", 0),
        ("amount", 1e308),
        ("amount", "NaN"),
        ("amount", 10.001),
        ("tenure_months", 85),
        ("interest_rate", -1),
        ("consumer_id", 2**63),
    ]:
        body = {
            "consumer_id": world.consumer_a["id"],
            "battery_id": world.battery_a["id"],
            "amount": 1000,
            "tenure_months": 6,
            "interest_rate": 10,
            field: value,
        }
        answer = client.post("/api/finance/applications", headers=bearer(world.dealer_a_user), json=body)
        assert answer.status_code == 400, (field, value, answer.text)
        assert field in answer.json()["error"]


def test_a_dealer_applies_only_for_its_own(client: TestClient, world: World) -> None:
    answer = client.post(
        "/api/finance/applications",
        headers=bearer(world.dealer_b_user),
        json={
            "consumer_id": world.consumer_a["id"],
            "battery_id": world.battery_a["id"],
            "amount": 1000,
            "tenure_months": 6,
            "interest_rate": 10,
        },
    )
    assert answer.status_code == 404
    mine = apply(client, world, battery=fresh_battery(world))
    listed = client.get("/api/finance/applications", headers=bearer(world.dealer_b_user)).json()
    assert mine["id"] not in {a["id"] for a in listed}
    own = client.get("/api/finance/applications", headers=bearer(world.consumer_a_user)).json()
    assert mine["id"] in {a["id"] for a in own}


def test_approval_creates_the_loan_and_its_schedule(client: TestClient, world: World) -> None:
    application = approve(client, world, apply(client, world, battery=fresh_battery(world))["id"])
    assert application["status"] == "approved" and application["approved_amount"] == 45000
    loan = client.get(f"/api/finance/loans/{application['loan_id']}", headers=bearer(world.consumer_a_user))
    assert loan.status_code == 200
    body = loan.json()
    assert body["emi"] == "2128.83" and len(body["instalments"]) == 24
    assert sum(float(i["principal"]) for i in body["instalments"]) == 45000
    assert body["outstanding_principal"] == "45000.00"
    first = add_months(today(), 1).isoformat()
    assert body["instalments"][0]["due_date"] == first
    assert body["next_due_date"] == first and body["next_due_amount"] == "2128.83"
    trail = client.get(f"/api/finance/loans/{body['id']}/audit", headers=bearer(world.admin)).json()
    assert [e["action"] for e in trail] == ["application_submitted", "application_approved"]


def test_approval_with_other_terms(client: TestClient, world: World) -> None:
    application = approve(
        client,
        world,
        apply(client, world, battery=fresh_battery(world))["id"],
        approved_amount=40000,
        interest_rate=0,
        tenure_months=10,
    )
    assert application["amount"] == 45000 and application["approved_amount"] == 40000
    assert application["interest_rate"] == 0 and application["tenure_months"] == 10
    loan = client.get(f"/api/finance/loans/{application['loan_id']}", headers=bearer(world.admin)).json()
    assert loan["emi"] == "4000.00" and all(i["interest"] == "0.00" for i in loan["instalments"])


def test_only_allowed_transitions(client: TestClient, world: World) -> None:
    application = apply(client, world, battery=fresh_battery(world))
    url = f"/api/finance/applications/{application['id']}"
    admin = bearer(world.admin)
    assert (
        client.put(f"{url}/disburse", headers=admin, json={"disbursement_date": str(today())}).json()["error"]
        == "Application is pending"
    )
    rejected = client.put(f"{url}/approve", headers=admin, json={"status": "rejected", "note": "income"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    again = client.put(f"{url}/approve", headers=admin, json={"status": "approved"})
    assert again.status_code == 409
    assert again.json()["error"] == "Application is rejected" and again.json()["code"] == "INVALID_TRANSITION"
    # dealers and consumers do not decide
    other = apply(client, world, battery=fresh_battery(world))
    for user in (world.dealer_a_user, world.consumer_a_user):
        answer = client.put(
            f"/api/finance/applications/{other['id']}/approve",
            headers=bearer(user),
            json={"status": "approved"},
        )
        assert answer.status_code == 403


def test_disbursement_moves_the_due_dates(client: TestClient, world: World) -> None:
    application = approve(client, world, apply(client, world, battery=fresh_battery(world))["id"])
    url = f"/api/finance/applications/{application['id']}"
    on = today() + timedelta(days=10)
    answer = client.put(f"{url}/disburse", headers=bearer(world.admin), json={"disbursement_date": str(on)})
    assert answer.status_code == 200 and answer.json()["status"] == "disbursed"
    assert answer.json()["disbursement_date"] == str(on)
    loan = client.get(f"/api/finance/loans/{application['loan_id']}", headers=bearer(world.admin)).json()
    assert [i["due_date"] for i in loan["instalments"][:2]] == [
        str(add_months(on, 1)),
        str(add_months(on, 2)),
    ]
    assert loan["schedule_start"] == str(on) and loan["disbursement_date"] == str(on)
    twice = client.put(f"{url}/disburse", headers=bearer(world.admin), json={"disbursement_date": str(on)})
    assert twice.status_code == 409 and twice.json()["error"] == "Application is disbursed"


def test_consumer_finance_lists_the_emis(client: TestClient, world: World) -> None:
    application = approve(
        client,
        world,
        apply(client, world, battery=fresh_battery(world), amount=12000, tenure=12, rate=0)["id"],
    )
    finance = client.get(
        f"/api/consumers/{world.consumer_a['id']}/finance", headers=bearer(world.consumer_a_user)
    ).json()
    loan = client.get(f"/api/finance/loans/{application['loan_id']}", headers=bearer(world.admin)).json()
    ids = {i["id"] for i in loan["instalments"]}
    mine = [e for e in finance["emi_schedules"] if e["id"] in ids]
    assert len(mine) == 12 and mine[0] == {
        "id": loan["instalments"][0]["id"],
        "emi_number": 1,
        "due_date": loan["instalments"][0]["due_date"],
        "amount": "1000.00",
        "status": "pending",
    }
    assert {
        "id": application["id"],
        "amount": 12000,
        "tenure_months": 12,
        "status": "approved",
    }.items() <= next(a for a in finance["applications"] if a["id"] == application["id"]).items()
    assert finance["total_applications"] == len(finance["applications"])
    assert finance["total_emi_due"] >= 12


def test_an_amount_or_rate_as_text_is_taken_only_as_the_document_writes_it(
    client: TestClient, world: World
) -> None:
    """The document allows a decimal as text; "" (documented valid before) and out-of-range text
    are a 400 naming the field, a decimal string in range is taken as its number."""
    documented = component(document()["components"]["schemas"]["ApplicationCreate"])["properties"]
    for field in ("amount", "interest_rate"):
        (text,) = [s for s in documented[field]["anyOf"] if s["type"] == "string"]
        assert not re.search(text["pattern"], "") and re.search(text["pattern"], "12.50"), text
    body = {"consumer_id": world.consumer_a["id"], "battery_id": world.battery_a["id"], "tenure_months": 6}
    for field, value in [("interest_rate", ""), ("interest_rate", "61"), ("amount", ""), ("amount", "0.00")]:
        sent = {"amount": 1000, "interest_rate": 10, **body, field: value}
        answer = client.post("/api/finance/applications", headers=bearer(world.dealer_a_user), json=sent)
        assert answer.status_code == 400 and answer.json()["error"] == f"Invalid fields: {field}", answer.text
    sent = {**body, "amount": "45000.50", "interest_rate": "12.50"}
    answer = client.post("/api/finance/applications", headers=bearer(world.dealer_a_user), json=sent)
    assert answer.status_code == 201, answer.text
    assert answer.json()["amount"] == 45000.5 and answer.json()["interest_rate"] == 12.5


def test_a_collection_report_date_is_a_calendar_date(client: TestClient, world: World) -> None:
    """`end_date=0` was read as 1970-01-01 (seconds since the epoch); the document says YYYY-MM-DD."""
    for value in ("0", "1700000000", "2026-01-01T00:00:00"):
        answer = client.get(
            "/api/finance/collection-report", params={"end_date": value}, headers=bearer(world.admin)
        )
        assert answer.status_code == 400 and answer.json()["error"] == "Invalid fields: end_date", answer.text
    answer = client.get(
        "/api/finance/collection-report", params={"end_date": "2026-01-31"}, headers=bearer(world.admin)
    )
    assert answer.status_code == 200 and answer.json()["end_date"] == "2026-01-31"
