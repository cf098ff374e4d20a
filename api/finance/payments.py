"""Payments: record one (idempotent by its reference), reverse one; the loan is locked for both."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import AsyncConnection

from api.auth.tokens import Principal
from api.errors import BadRequest, Conflict, NotFound
from api.finance import overdue, overdue_queries, payment_queries, queries
from api.finance.access import scope_for, within
from api.finance.loans import (
    business_date,
    business_today,
    penalty_policy,
    states,
    summary_body,
    with_payment,
)
from api.finance.models import PaymentCreate
from api.finance.schedule import allocate, future_after_prepayment
from api.finance.service import visible_loan
from packfleet.settings import Settings

log = logging.getLogger(__name__)

Row = dict[str, Any]
WRITERS = ("admin", "dealer", "nbfc")


class ReferenceConflict(Conflict):
    code = "PAYMENT_REFERENCE_CONFLICT"


async def record_payment(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, loan_id: int, body: PaymentCreate
) -> tuple[Row, bool]:
    """Record and allocate a payment; return the result and whether it is new.

    The same reference again (for the same loan and amount) is the first payment: nothing is
    recorded twice, also when two requests race (the loan's lock orders them, the unique
    reference decides between loans).
    """
    await scope_for(conn, principal, *WRITERS)
    today, policy = business_today(settings), penalty_policy(settings)
    paid_on = body.paid_on or today
    if paid_on > today:
        raise BadRequest(
            [{"field": "paid_on", "message": "is in the future"}], error="Invalid fields: paid_on"
        )
    async with conn.transaction():
        loan = await visible_loan(conn, principal=principal, loan_id=loan_id, lock=True)
        if loan["status"] != "active":  # nothing is owed: only a repeat of an earlier payment is answered
            if (earlier := await _earlier(conn, loan=loan, body=body, settings=settings)) is not None:
                return earlier, False
            raise Conflict(f"Loan {loan_id} is closed: nothing is owed", error="Loan is closed")
        if paid_on < business_date(loan["created_at"], settings):
            raise BadRequest(
                [{"field": "paid_on", "message": "is before the loan existed"}],
                error="Invalid fields: paid_on",
            )
        rows = await queries.instalments_of(conn, [loan_id])
        split = allocate(states(rows), body.amount, today, policy, received_on=paid_on)
        if split.excess > 0:  # a repeat of an earlier payment is answered as such, even so
            if (earlier := await _earlier(conn, loan=loan, body=body, settings=settings)) is not None:
                return earlier, False
            raise Conflict(
                f"The loan is closed by {body.amount - split.excess:.2f}; "
                f"this payment is {split.excess:.2f} more",
                error="Payment exceeds what is owed",
                code="OVERPAYMENT",
            )
        detail = {
            "reference": body.reference,
            "amount": str(body.amount),
            "paid_on": paid_on.isoformat(),
            "method": body.method,
            "allocated": {str(a.instalment_id): str(a.total) for a in split.allocations},
            "late_fees_charged": {str(k): str(v) for k, v in split.penalties_charged.items()},
            "prepaid_principal": str(split.prepaid),
        }
        payment = await payment_queries.record_allocated(
            conn,
            loan_id=loan_id,
            dealer_id=loan["dealer_id"],
            reference=body.reference,
            amount=body.amount,
            paid_on=paid_on,
            method=body.method,
            prepaid_principal=split.prepaid,
            recorded_by=principal.actor,
            allocations=split.allocations,
            penalties=split.penalties_charged,
            audit_detail=None if split.prepaid else detail,  # a prepayment: after its reschedule
        )
        if payment is None:  # the reference is taken: this is a repeat (or a mistake)
            earlier = await _earlier(conn, loan=loan, body=body, settings=settings)
            assert earlier is not None
            return earlier, False
        rows = with_payment(rows, split, at=payment["recorded_at"])
        if split.prepaid:
            await _reschedule(conn, loan=loan, change=split.prepaid, today=today, actor=principal.actor)
            rows = await queries.instalments_of(conn, [loan_id])
            await queries.audit(
                conn,
                actor=principal.actor,
                action="payment_recorded",
                loan_id=loan_id,
                payment_id=payment["id"],
                detail=detail,
            )
        closed = all(r["paid_at"] is not None for r in rows)
        if closed:
            await queries.set_loan_status(conn, loan_id, closed=True)
        enabled, still_disabled = None, loan["battery_disabled_for_overdue"]
        if loan["overdue_disable_open"]:
            enabled = await overdue.release_if_cleared(
                conn, loan_id=loan_id, today=today, actor=principal.actor, payment_id=payment["id"]
            )
            still_disabled = await overdue_queries.disabled_for_overdue(conn, loan_id)
    number = {r["id"]: r["emi_number"] for r in rows}
    loan = {
        **loan,
        "status": "closed" if closed else "active",
        "battery_disabled_for_overdue": still_disabled,
    }
    log.info(
        "payment recorded",
        extra={"loan_id": loan_id, "payment_id": payment["id"], "amount": str(body.amount)},
    )
    return {
        "payment": {
            **payment,
            "reversed_at": None,
            "reversal_reason": None,
            "allocations": [
                {**vars(a), "emi_number": number.get(a.instalment_id)} for a in split.allocations
            ],
        },
        "loan": summary_body(loan, rows, today, policy),
        "enable_command_id": None if enabled is None else str(enabled),
    }, True


async def _earlier(
    conn: AsyncConnection, *, loan: Row, body: PaymentCreate, settings: Settings
) -> Row | None:
    """The result of the payment recorded earlier with this reference (409 if it was another one)."""
    existing = await payment_queries.payment_by_reference(
        conn, dealer_id=loan["dealer_id"], reference=body.reference
    )
    if existing is None:
        return None
    _same_payment(existing, loan_id=loan["id"], body=body)
    return await result(conn, existing["id"], settings=settings)


def _same_payment(existing: Row, *, loan_id: int, body: PaymentCreate) -> None:
    if existing["loan_id"] != loan_id:
        raise ReferenceConflict(
            f"Reference {body.reference} is already a payment of loan {existing['loan_id']}",
            error="Payment reference already used",
        )
    if existing["amount"] != body.amount:
        raise ReferenceConflict(
            f"Reference {body.reference} was recorded for {existing['amount']:.2f}, not {body.amount:.2f}",
            error="Payment reference already used",
        )


async def _reschedule(conn: AsyncConnection, *, loan: Row, change: Decimal, today: date, actor: str) -> None:
    """The instalments not yet due, recomputed after the principal changed by `change` (a prepayment;
    negative when a reversal gives one back), keeping the EMI."""
    rows = await queries.instalments_of(conn, [loan["id"]])
    replaced, successors = future_after_prepayment(
        states(rows),
        prepaid=change,
        on=today,
        annual_percent=loan["interest_rate"],
        emi_amount=loan["emi"],
        start=loan["schedule_start"],
    )
    await queries.delete_instalments(conn, [i.id for i in replaced])
    await queries.insert_instalments(conn, loan["id"], successors)
    await queries.audit(
        conn,
        actor=actor,
        action="schedule_recomputed",
        loan_id=loan["id"],
        detail={
            "principal_change": str(-change),
            "replaced_instalments": len(replaced),
            "new_instalments": len(successors),
            "last_due_date": successors[-1].due_date.isoformat() if successors else None,
        },
    )


async def reverse_payment(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, payment_id: int, reason: str
) -> Row:
    """Take a payment back (entered in error): what it paid is owed again, a prepayment is undone.

    Reversing twice is one reversal. If the payment had enabled a battery disabled for the overdue
    and the loan is overdue beyond the threshold again, its charging is cut again at once (unless
    an operator's command came since): the state is as before the payment.
    """
    scope = await scope_for(conn, principal, *WRITERS)
    payment = await payment_queries.get_payment(conn, payment_id)
    loan = None if payment is None else await queries.get_loan(conn, payment["loan_id"])
    if payment is None or loan is None or not within(scope, loan):
        raise NotFound(f"No payment with id {payment_id}", error="Payment not found")
    today = business_today(settings)
    async with conn.transaction():
        loan = await queries.get_loan(conn, payment["loan_id"], lock=True)
        assert loan is not None
        if await payment_queries.insert_reversal(
            conn, payment_id=payment_id, reason=reason, reversed_by=principal.actor
        ):
            await payment_queries.take_back_allocations(conn, payment_id)
            if payment["prepaid_principal"]:
                await _reschedule(
                    conn, loan=loan, change=-payment["prepaid_principal"], today=today, actor=principal.actor
                )
            if loan["status"] == "closed":
                try:
                    async with conn.transaction():
                        await queries.set_loan_status(conn, loan["id"], closed=False)
                except psycopg.errors.UniqueViolation:
                    raise Conflict(
                        f"Battery {loan['battery_serial']} has another running loan now",
                        error="Loan cannot reopen",
                    ) from None
            await queries.audit(
                conn,
                actor=principal.actor,
                action="payment_reversed",
                loan_id=loan["id"],
                payment_id=payment_id,
                detail={
                    "reason": reason,
                    "amount": str(payment["amount"]),
                    "reference": payment["reference"],
                },
            )
            log.info("payment reversed", extra={"payment_id": payment_id, "loan_id": loan["id"]})
            await overdue.disable_again_after_reversal(
                conn, payment_id=payment_id, settings=settings, today=today, actor=principal.actor
            )
        answer = await result(conn, payment_id, settings=settings)
    return answer


async def loan_payments(
    conn: AsyncConnection, *, principal: Principal, loan_id: int, limit: int, offset: int
) -> list[Row]:
    await visible_loan(conn, principal=principal, loan_id=loan_id)
    rows = await payment_queries.payments_of_loan(conn, loan_id, limit=limit, offset=offset)
    return await _with_allocations(conn, rows)


async def _with_allocations(conn: AsyncConnection, payments: list[Row]) -> list[Row]:
    by_payment: dict[int, list[Row]] = {p["id"]: [] for p in payments}
    for row in await payment_queries.allocations_of(conn, list(by_payment)):
        by_payment[row["payment_id"]].append(row)
    return [{**p, "allocations": by_payment[p["id"]]} for p in payments]


async def result(conn: AsyncConnection, payment_id: int, *, settings: Settings) -> Row:
    """A payment as stored, with the loan as it stands now."""
    payment = await payment_queries.get_payment(conn, payment_id)
    assert payment is not None
    loan = await queries.get_loan(conn, payment["loan_id"])
    assert loan is not None
    instalments = await queries.instalments_of(conn, [loan["id"]])
    enable = await overdue_queries.enable_of_payment(conn, payment_id)
    return {
        "payment": (await _with_allocations(conn, [payment]))[0],
        "loan": summary_body(loan, instalments, business_today(settings), penalty_policy(settings)),
        "enable_command_id": None if enable is None else str(enable),
    }
