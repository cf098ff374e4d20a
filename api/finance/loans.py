"""A loan as the API shows it: its position today and its instalments, from the stored rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from api.finance.schedule import InstalmentState, PenaltyPolicy, Split, overdue_days, position
from packfleet.settings import Settings

Row = dict[str, Any]


def business_today(settings: Settings) -> date:
    """Today in the business's time zone: due dates are that calendar's dates."""
    return datetime.now(ZoneInfo(settings.finance_timezone)).date()


def business_date(moment: datetime, settings: Settings) -> date:
    """The business calendar's date of a moment (20:00 UTC is already tomorrow in Asia/Kolkata)."""
    return moment.astimezone(ZoneInfo(settings.finance_timezone)).date()


def penalty_policy(settings: Settings) -> PenaltyPolicy:
    return PenaltyPolicy(
        fee=settings.finance_late_fee,
        percent=settings.finance_late_fee_percent,
        after_days=settings.finance_late_fee_after_days,
    )


def states(rows: Sequence[Row]) -> list[InstalmentState]:
    return [
        InstalmentState(
            id=r["id"],
            emi_number=r["emi_number"],
            due_date=r["due_date"],
            principal=r["principal"],
            interest=r["interest"],
            penalty=r["penalty"],
            principal_paid=r["principal_paid"],
            interest_paid=r["interest_paid"],
            penalty_paid=r["penalty_paid"],
        )
        for r in rows
    ]


def with_payment(rows: Sequence[Row], split: Split, *, at: datetime) -> list[Row]:
    """The instalment rows once a payment's split is applied (as record_allocated stores it)."""
    paid = {a.instalment_id: a for a in split.allocations}
    out = []
    for row in rows:
        part, fee = paid.get(row["id"]), split.penalties_charged.get(row["id"])
        if part is None and fee is None:
            out.append(row)
            continue
        new = dict(row)
        new["penalty"] = max(row["penalty"], fee or 0)
        if part is not None:
            new["penalty_paid"] += part.penalty
            new["interest_paid"] += part.interest
            new["principal_paid"] += part.principal
        if states([new])[0].outstanding == 0:
            new["paid_at"] = at
        out.append(new)
    return out


def summary_body(loan: Row, instalments: Sequence[Row], today: date, policy: PenaltyPolicy) -> Row:
    """The loan's LoanSummary fields."""
    where = position(states(instalments), today, policy)
    return {
        **{
            k: loan[k]
            for k in (
                "id",
                "application_id",
                "consumer_id",
                "dealer_id",
                "battery_id",
                "battery_serial",
                "nbfc_id",
                "principal",
                "interest_rate",
                "tenure_months",
                "emi",
                "schedule_start",
                "disbursement_date",
                "status",
                "battery_disabled_for_overdue",
                "created_at",
            )
        },
        "outstanding_principal": where.outstanding_principal,
        "overdue_amount": where.overdue_amount,
        "overdue_instalments": where.overdue_instalments,
        "next_due_date": where.next_due.due_date if where.next_due else None,
        "next_due_amount": where.next_due_amount,
        "payoff_amount": where.payoff,
        "remaining_instalments": where.remaining,
    }


def instalment_body(row: Row, today: date, policy: PenaltyPolicy) -> Row:
    state = states([row])[0]
    penalty = state.penalty_as_of(today, policy)
    outstanding = state.outstanding + penalty - state.penalty
    late = row["due_date"] < today and outstanding > 0
    return {
        "id": row["id"],
        "emi_number": row["emi_number"],
        "due_date": row["due_date"],
        "amount": state.amount,
        "principal": state.principal,
        "interest": state.interest,
        "penalty": penalty,
        "paid": state.paid,
        "outstanding": outstanding,
        "overdue_amount": outstanding if late else 0,
        "overdue_days": overdue_days(row["due_date"], today) if outstanding > 0 else 0,
        "status": state.status(),
        "paid_at": row["paid_at"],
    }


def loan_body(loan: Row, instalments: Sequence[Row], today: date, policy: PenaltyPolicy) -> Row:
    return {
        **summary_body(loan, instalments, today, policy),
        "instalments": [instalment_body(r, today, policy) for r in instalments],
    }
