"""Finance use cases: applications and their decisions, loans and their schedules, consumer finance.

Payments are in payments.py, the overdue list, collection report and auto-disable in overdue.py.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

from api.auth.tokens import Principal
from api.consumers import queries as consumer_queries
from api.errors import BadRequest, Conflict, NotFound
from api.finance import queries
from api.finance.access import Scope, scope_for, within
from api.finance.loans import (
    business_date,
    business_today,
    instalment_body,
    loan_body,
    penalty_policy,
    summary_body,
)
from api.finance.models import ApplicationCreate, ApplicationDecision, json_number
from api.finance.schedule import add_months, emi, schedule
from packfleet.settings import Settings

log = logging.getLogger(__name__)

Row = dict[str, Any]

# Allowed status changes; anything else is a 409 naming the current status.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"approved", "rejected"}),
    "submitted": frozenset({"under_review", "approved", "rejected"}),
    "under_review": frozenset({"approved", "rejected"}),
    "approved": frozenset({"disbursed"}),
    "rejected": frozenset(),
    "disbursed": frozenset(),
}
READERS = ("admin", "dealer", "consumer", "nbfc")
DECIDERS = ("admin", "nbfc")
MAX_DISBURSEMENT_AHEAD = timedelta(days=31)


class InvalidTransition(Conflict):
    code = "INVALID_TRANSITION"

    def __init__(self, current: str, wanted: str) -> None:
        allowed = sorted(TRANSITIONS.get(current, ()))
        super().__init__(
            f"A {current} application cannot become {wanted}"
            + (f"; it can become {', '.join(allowed)}" if allowed else ""),
            error=f"Application is {current}",
            extra={"current_status": current},
        )


def check_transition(current: str, wanted: str) -> None:
    if wanted not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(current, wanted)


def _application_not_found(application_id: int) -> NotFound:
    return NotFound(f"No finance application with id {application_id}", error="Application not found")


def _loan_not_found(loan_id: int) -> NotFound:
    return NotFound(f"No loan with id {loan_id}", error="Loan not found")


# --- applications -------------------------------------------------------------------------------


async def create_application(
    conn: AsyncConnection,
    *,
    principal: Principal,
    body: ApplicationCreate,
    status: str = "pending",
    nbfc_id: int | None = None,
) -> Row:
    """Record an application for one of the caller's consumers and batteries (status `pending`,
    or `submitted` when it goes to an NBFC); the caller owns the transaction."""
    await scope_for(conn, principal, "admin", "dealer")
    consumer = await consumer_queries.get_consumer(conn, body.consumer_id)
    if consumer is None or (principal.role == "dealer" and consumer["dealer_id"] != principal.dealer_id):
        raise NotFound(f"No consumer found with id {body.consumer_id}", error="Consumer not found")
    battery = await queries.battery_for_application(conn, body.battery_id)
    if battery is None or battery["dealer_id"] != consumer["dealer_id"]:
        raise NotFound(f"No battery of this dealer with id {body.battery_id}", error="Battery not found")
    if battery["owner_id"] not in (None, consumer["id"]):
        raise Conflict(
            f"Battery {battery['serial_number']} is assigned to another consumer",
            error="Battery not available",
        )
    application_id = await queries.insert_application(
        conn,
        dealer_id=consumer["dealer_id"],
        consumer_id=consumer["id"],
        battery_id=battery["id"],
        amount=body.amount,
        tenure_months=body.tenure_months,
        interest_rate=body.interest_rate,
        status=status,
        nbfc_id=nbfc_id,
        created_by=principal.actor,
    )
    if application_id is None:
        raise Conflict(
            f"Battery {battery['serial_number']} already has an application awaiting a decision",
            error="Application already open",
        )
    await queries.audit(
        conn,
        actor=principal.actor,
        action="application_submitted",
        application_id=application_id,
        battery_id=battery["id"],
        detail={
            "amount": str(body.amount),
            "tenure_months": body.tenure_months,
            "interest_rate": str(body.interest_rate),
            "status": status,
            "nbfc_id": nbfc_id,
        },
    )
    row = await queries.get_application(conn, application_id)
    assert row is not None
    log.info("finance application", extra={"application_id": application_id, "status": status})
    return row


async def submit_application(conn: AsyncConnection, *, principal: Principal, body: ApplicationCreate) -> Row:
    async with conn.transaction():
        return await create_application(conn, principal=principal, body=body)


async def list_applications(
    conn: AsyncConnection,
    *,
    principal: Principal,
    status: str | None,
    consumer_id: int | None,
    limit: int,
    offset: int,
) -> list[Row]:
    scope = await scope_for(conn, principal, *READERS)
    return await queries.list_applications(
        conn, scope=scope, status=status, consumer_id=consumer_id, limit=limit, offset=offset
    )


async def get_application(conn: AsyncConnection, *, principal: Principal, application_id: int) -> Row:
    scope = await scope_for(conn, principal, *READERS)
    row = await queries.get_application(conn, application_id)
    if row is None or not within(scope, row):
        raise _application_not_found(application_id)
    return row


async def _locked_application(conn: AsyncConnection, scope: Scope, application_id: int) -> Row:
    row = await queries.get_application(conn, application_id, lock=True)
    if row is None or not within(scope, row):
        raise _application_not_found(application_id)
    return row


async def approve(
    conn: AsyncConnection,
    *,
    application: Row,
    amount: Decimal,
    interest_rate: Decimal,
    tenure_months: int,
    note: str | None,
    actor: str,
    today: date,
    disbursement_date: date | None = None,
) -> int:
    """Approve a locked application: its loan and EMI schedule from today (or from the disbursement
    date, when given); return the loan id. The caller checked the transition."""
    await queries.decide_application(
        conn,
        application["id"],
        status="approved",
        approved_amount=amount,
        interest_rate=interest_rate,
        tenure_months=tenure_months,
        note=note,
        decided_by=actor,
    )
    start = disbursement_date or today
    rows = schedule(amount, interest_rate, tenure_months, start)
    loan_id = await queries.insert_loan(
        conn,
        application=application,
        principal=amount,
        interest_rate=interest_rate,
        tenure_months=tenure_months,
        emi=emi(amount, interest_rate, tenure_months),
        schedule_start=start,
        disbursement_date=disbursement_date,
    )
    if loan_id is None:
        raise Conflict(
            f"Battery {application['battery_serial']} already has a running loan",
            error="Battery already financed",
        )
    await queries.insert_instalments(conn, loan_id, rows)
    if disbursement_date:
        await queries.set_application_status(
            conn, application["id"], status="disbursed", disbursement_date=disbursement_date
        )
    await queries.audit(
        conn,
        actor=actor,
        action="application_approved",
        application_id=application["id"],
        loan_id=loan_id,
        battery_id=application["battery_id"],
        detail={
            "approved_amount": str(amount),
            "interest_rate": str(interest_rate),
            "tenure_months": tenure_months,
            "emi": str(rows[0].amount),
            "schedule_start": start.isoformat(),
            "disbursement_date": None if disbursement_date is None else disbursement_date.isoformat(),
            "first_due_date": rows[0].due_date.isoformat(),
            "note": note,
        },
    )
    log.info("loan created", extra={"application_id": application["id"], "loan_id": loan_id})
    return loan_id


async def reject(conn: AsyncConnection, *, application: Row, note: str | None, actor: str) -> None:
    await queries.decide_application(
        conn,
        application["id"],
        status="rejected",
        approved_amount=None,
        interest_rate=application["interest_rate"],
        tenure_months=application["tenure_months"],
        note=note,
        decided_by=actor,
    )
    await queries.audit(
        conn,
        actor=actor,
        action="application_rejected",
        application_id=application["id"],
        detail={"note": note},
    )


async def decide_application(
    conn: AsyncConnection,
    *,
    principal: Principal,
    settings: Settings,
    application_id: int,
    body: ApplicationDecision,
) -> Row:
    """Approve (the loan and its schedule exist from now) or reject an undecided application."""
    scope = await scope_for(conn, principal, *DECIDERS)
    async with conn.transaction():
        application = await _locked_application(conn, scope, application_id)
        check_transition(application["status"], body.status)
        if body.status == "approved":
            await approve(
                conn,
                application=application,
                amount=body.approved_amount or application["amount"],
                interest_rate=application["interest_rate"]
                if body.interest_rate is None
                else body.interest_rate,
                tenure_months=body.tenure_months or application["tenure_months"],
                note=body.note,
                actor=principal.actor,
                today=business_today(settings),
            )
        else:
            await reject(conn, application=application, note=body.note, actor=principal.actor)
        row = await queries.get_application(conn, application_id)
    assert row is not None
    return row


async def record_disbursement(
    conn: AsyncConnection, *, application: Row, disbursement_date: date, actor: str, settings: Settings
) -> None:
    """approved → disbursed: the loan's due dates move to run monthly from the disbursement date."""
    check_transition(application["status"], "disbursed")
    today = business_today(settings)
    made_on = business_date(application["created_at"], settings)
    problem = (
        "is before the application was made"
        if disbursement_date < made_on
        else "is more than 31 days ahead"
        if disbursement_date > today + MAX_DISBURSEMENT_AHEAD
        else None
    )
    if problem:
        raise BadRequest(
            [{"field": "disbursement_date", "message": problem}], error="Invalid fields: disbursement_date"
        )
    loan = await queries.loan_of_application(conn, application["id"], lock=True)
    assert loan is not None  # an approved application has its loan
    instalments = await queries.instalments_of(conn, [loan["id"]])
    numbers = [r["emi_number"] for r in instalments]
    await queries.move_due_dates(
        conn, loan["id"], numbers, [add_months(disbursement_date, n) for n in numbers]
    )
    await queries.set_schedule_start(
        conn, loan["id"], start=disbursement_date, disbursement_date=disbursement_date
    )
    await queries.set_application_status(
        conn, application["id"], status="disbursed", disbursement_date=disbursement_date
    )
    await queries.audit(
        conn,
        actor=actor,
        action="disbursement_recorded",
        application_id=application["id"],
        loan_id=loan["id"],
        detail={
            "disbursement_date": disbursement_date.isoformat(),
            "previous_schedule_start": loan["schedule_start"].isoformat(),
        },
    )


async def disburse(
    conn: AsyncConnection,
    *,
    principal: Principal,
    settings: Settings,
    application_id: int,
    disbursement_date: date,
) -> Row:
    scope = await scope_for(conn, principal, *DECIDERS)
    async with conn.transaction():
        application = await _locked_application(conn, scope, application_id)
        await record_disbursement(
            conn,
            application=application,
            disbursement_date=disbursement_date,
            actor=principal.actor,
            settings=settings,
        )
        row = await queries.get_application(conn, application_id)
    assert row is not None
    return row


# --- loans --------------------------------------------------------------------------------------


async def visible_loan(
    conn: AsyncConnection, *, principal: Principal, loan_id: int, lock: bool = False
) -> Row:
    scope = await scope_for(conn, principal, *READERS)
    loan = await queries.get_loan(conn, loan_id, lock=lock)
    if loan is None or not within(scope, loan):
        raise _loan_not_found(loan_id)
    return loan


async def loan_detail(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, loan_id: int
) -> Row:
    loan = await visible_loan(conn, principal=principal, loan_id=loan_id)
    instalments = await queries.instalments_of(conn, [loan_id])
    return loan_body(loan, instalments, business_today(settings), penalty_policy(settings))


async def list_loans(
    conn: AsyncConnection,
    *,
    principal: Principal,
    settings: Settings,
    status: str | None,
    consumer_id: int | None,
    limit: int,
    offset: int,
) -> list[Row]:
    scope = await scope_for(conn, principal, *READERS)
    loans = await queries.list_loans(
        conn, scope=scope, status=status, consumer_id=consumer_id, limit=limit, offset=offset
    )
    by_loan: dict[int, list[Row]] = {loan["id"]: [] for loan in loans}
    for row in await queries.instalments_of(conn, list(by_loan)):
        by_loan[row["loan_id"]].append(row)
    today, policy = business_today(settings), penalty_policy(settings)
    return [summary_body(loan, by_loan[loan["id"]], today, policy) for loan in loans]


async def loan_audit(conn: AsyncConnection, *, principal: Principal, loan_id: int) -> list[Row]:
    loan = await visible_loan(conn, principal=principal, loan_id=loan_id)
    rows = await queries.audit_trail(conn, loan_id=loan_id, application_id=loan["application_id"])
    return [{**r, "command_id": None if r["command_id"] is None else str(r["command_id"])} for r in rows]


async def consumer_finance(conn: AsyncConnection, *, settings: Settings, consumer_id: int) -> Row:
    """The spec's consumer finance answer: the consumer's applications and every EMI of their loans
    (the caller checked the consumer is visible); a loan's detail is GET /api/finance/loans/{id}."""
    applications = await queries.consumer_applications(conn, consumer_id)
    loan_ids = [a["loan_id"] for a in applications if a["loan_id"] is not None]
    today, policy = business_today(settings), penalty_policy(settings)
    emis = [instalment_body(r, today, policy) for r in await queries.instalments_of(conn, loan_ids)]
    return {
        "applications": [
            {
                "id": a["id"],
                "amount": json_number(a["amount"]),
                "tenure_months": a["tenure_months"],
                "status": a["status"],
                "battery_serial": a["battery_serial"],
            }
            for a in applications
        ],
        "emi_schedules": [
            {
                "id": e["id"],
                "emi_number": e["emi_number"],
                "due_date": e["due_date"].isoformat(),
                "amount": f"{e['amount']:.2f}",
                "status": e["status"],
            }
            for e in emis
        ],
        "total_applications": len(applications),
        "total_emi_due": sum(1 for e in emis if e["status"] != "paid"),
    }
