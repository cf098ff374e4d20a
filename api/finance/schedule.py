"""EMI schedules on the reducing-balance method, and payment allocation; pure rules, no database.

EMI = P·r·(1+r)^n / ((1+r)^n − 1), r the monthly rate (annual % / 1200), computed exactly (as a
fraction) and rounded to the paisa, half up. Each instalment's interest is the balance × r rounded
to the paisa and its principal the EMI less that interest; the last instalment takes whatever
principal is left, so the principal parts add up to exactly P. Due dates fall monthly from a start
date (the approval, then the disbursement date), clamped to the month's end: 31 Jan → 28/29 Feb.

A payment pays the instalments due by its date, oldest first, each penalty → interest → principal.
What is left beyond them reduces the outstanding principal: the instalments not yet due are then
recomputed from the smaller balance, keeping the EMI, so the tenure shortens.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

PAISA = Decimal("0.01")
ZERO = Decimal("0.00")


def to_paisa(value: Decimal | Fraction) -> Decimal:
    """Round to the paisa, half up (a Fraction is rounded exactly)."""
    if isinstance(value, Fraction):
        paise, rest = divmod(value * 100, 1)
        return Decimal(int(paise) + (1 if rest >= Fraction(1, 2) else 0)) / 100
    return value.quantize(PAISA, rounding=ROUND_HALF_UP)


def monthly_rate(annual_percent: Decimal) -> Fraction:
    return Fraction(annual_percent) / 1200


def emi(principal: Decimal, annual_percent: Decimal, months: int) -> Decimal:
    """The equated monthly instalment, rounded to the paisa; P / n when the rate is zero."""
    if months < 1:
        raise ValueError("a loan runs at least one month")
    if principal <= 0:
        raise ValueError("the principal must be positive")
    r = monthly_rate(annual_percent)
    p = Fraction(principal)
    if r == 0:
        return to_paisa(p / months)
    growth = (1 + r) ** months
    return to_paisa(p * r * growth / (growth - 1))


def interest_on(balance: Decimal, annual_percent: Decimal) -> Decimal:
    """One month's interest on a balance, rounded to the paisa."""
    return to_paisa(Fraction(balance) * monthly_rate(annual_percent))


def add_months(start: date, months: int) -> date:
    """The same day `months` later, clamped to the end of a shorter month."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Instalment:
    """One EMI of a schedule."""

    emi_number: int
    due_date: date
    principal: Decimal
    interest: Decimal

    @property
    def amount(self) -> Decimal:
        return self.principal + self.interest


def schedule(principal: Decimal, annual_percent: Decimal, months: int, start: date) -> list[Instalment]:
    """The loan's n instalments; the last one's principal is what is left, so the parts sum to P."""
    return _amortize(
        principal,
        annual_percent,
        emi(principal, annual_percent, months),
        start=start,
        first_number=1,
        count=months,
    )


def reschedule(
    balance: Decimal, annual_percent: Decimal, emi_amount: Decimal, *, start: date, first_number: int
) -> list[Instalment]:
    """Instalments repaying `balance` at the same EMI (as many as it takes), numbered and dated on."""
    if balance <= 0:
        return []
    return _amortize(balance, annual_percent, emi_amount, start=start, first_number=first_number, count=None)


def _amortize(
    balance: Decimal,
    annual_percent: Decimal,
    emi_amount: Decimal,
    *,
    start: date,
    first_number: int,
    count: int | None,
) -> list[Instalment]:
    rows: list[Instalment] = []
    number = first_number
    while balance > 0:
        interest = interest_on(balance, annual_percent)
        last = balance + interest <= emi_amount or (count is not None and len(rows) == count - 1)
        principal = balance if last else min(emi_amount - interest, balance)
        if principal <= 0:
            raise ValueError(f"an EMI of {emi_amount} does not cover the interest on {balance}")
        rows.append(Instalment(number, add_months(start, number), principal, interest))
        balance -= principal
        number += 1
    return rows


# --- payments ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PenaltyPolicy:
    """A late fee charged once on an instalment still unpaid `after_days` days past its due date.

    The fee is `fee` plus `percent` % of the instalment's amount; both 0 (off) by default.
    """

    fee: Decimal = ZERO
    percent: Decimal = ZERO
    after_days: int = 0

    @property
    def active(self) -> bool:
        return self.fee > 0 or self.percent > 0

    def charge(self, amount: Decimal) -> Decimal:
        return to_paisa(self.fee + amount * self.percent / 100)

    def applies(self, due_date: date, on: date) -> bool:
        return self.active and (on - due_date).days > self.after_days


@dataclass(frozen=True)
class InstalmentState:
    """An instalment as stored: its parts and what of each is paid."""

    id: int
    emi_number: int
    due_date: date
    principal: Decimal
    interest: Decimal
    penalty: Decimal = ZERO
    principal_paid: Decimal = ZERO
    interest_paid: Decimal = ZERO
    penalty_paid: Decimal = ZERO

    @property
    def amount(self) -> Decimal:
        return self.principal + self.interest

    @property
    def outstanding(self) -> Decimal:
        return self.principal + self.interest + self.penalty - self.paid

    @property
    def paid(self) -> Decimal:
        return self.principal_paid + self.interest_paid + self.penalty_paid

    @property
    def touched(self) -> bool:
        return self.paid > 0

    def penalty_as_of(self, on: date, policy: PenaltyPolicy) -> Decimal:
        """The penalty owed on `on`: the one charged, or the one the policy charges now."""
        if self.penalty == 0 and self.outstanding > 0 and policy.applies(self.due_date, on):
            return policy.charge(self.amount)
        return self.penalty

    def status(self) -> str:
        if self.outstanding == 0:
            return "paid"
        return "partial" if self.touched else "pending"


@dataclass(frozen=True)
class Allocation:
    """What a payment paid of one instalment."""

    instalment_id: int
    penalty: Decimal
    interest: Decimal
    principal: Decimal

    @property
    def total(self) -> Decimal:
        return self.penalty + self.interest + self.principal


@dataclass(frozen=True)
class Split:
    """How a payment divides: over due instalments, as prepaid principal, and any excess."""

    allocations: list[Allocation]
    penalties_charged: dict[int, Decimal] = field(default_factory=dict)  # instalment id → fee
    prepaid: Decimal = ZERO
    excess: Decimal = ZERO  # more than the loan's payoff amount: refused by the caller


def due_by(instalments: Sequence[InstalmentState], on: date) -> list[InstalmentState]:
    """Instalments with something outstanding and due on or before `on`, oldest first."""
    return sorted(
        (i for i in instalments if i.due_date <= on and i.outstanding > 0),
        key=lambda i: (i.due_date, i.emi_number),
    )


def not_yet_due(instalments: Sequence[InstalmentState], on: date) -> list[InstalmentState]:
    return [i for i in instalments if i.due_date > on]


def payoff(instalments: Sequence[InstalmentState], on: date, policy: PenaltyPolicy) -> Decimal:
    """What closes the loan on `on`: everything due (penalties included) and the principal not yet due."""
    due = sum(
        (i.outstanding + i.penalty_as_of(on, policy) - i.penalty for i in due_by(instalments, on)),
        ZERO,
    )
    ahead = sum((i.principal - i.principal_paid for i in not_yet_due(instalments, on)), ZERO)
    return due + ahead


def allocate(
    instalments: Sequence[InstalmentState],
    amount: Decimal,
    on: date,
    policy: PenaltyPolicy,
    *,
    received_on: date | None = None,
) -> Split:
    """Split a payment recorded on `on`: due instalments oldest first (penalty → interest →
    principal), then the principal not yet due; what exceeds even that is `excess`. Late fees are
    judged on the day the money was received (`received_on`, default `on`)."""
    if amount <= 0:
        raise ValueError("a payment is a positive amount")
    left = amount
    allocations: list[Allocation] = []
    charged: dict[int, Decimal] = {}
    for inst in due_by(instalments, on):
        if left == 0:
            break
        penalty_owed = inst.penalty_as_of(received_on or on, policy)
        if penalty_owed != inst.penalty:
            charged[inst.id] = penalty_owed
        parts = []
        for owed, paid in (
            (penalty_owed, inst.penalty_paid),
            (inst.interest, inst.interest_paid),
            (inst.principal, inst.principal_paid),
        ):
            take = min(left, owed - paid)
            parts.append(take)
            left -= take
        if any(parts):
            allocations.append(Allocation(inst.id, *parts))
    ahead = sum((i.principal - i.principal_paid for i in not_yet_due(instalments, on)), ZERO)
    prepaid = min(left, ahead)
    return Split(allocations, charged, prepaid, left - prepaid)


def future_after_prepayment(
    instalments: Sequence[InstalmentState],
    *,
    prepaid: Decimal,
    on: date,
    annual_percent: Decimal,
    emi_amount: Decimal,
    start: date,
) -> tuple[list[InstalmentState], list[Instalment]]:
    """The instalments a principal change replaces (not yet due, nothing paid) and their successors.

    The balance they carried, less `prepaid` (negative: plus what a reversal gives back), is repaid
    at the same EMI from the first replaced number on.
    """
    replaced = [i for i in not_yet_due(instalments, on) if not i.touched]
    balance = sum((i.principal for i in replaced), ZERO) - prepaid
    if balance < 0:
        raise ValueError("prepaid more than the principal not yet due")
    numbers = [i.emi_number for i in replaced] or [max((i.emi_number for i in instalments), default=0) + 1]
    first = min(numbers)
    return replaced, reschedule(balance, annual_percent, emi_amount, start=start, first_number=first)


def overdue_days(due_date: date, today: date) -> int:
    """Whole days past the due date (0 on the due date itself)."""
    return max((today - due_date).days, 0)


@dataclass(frozen=True)
class Position:
    """Where a loan stands on a day."""

    outstanding_principal: Decimal
    overdue_amount: Decimal  # owed on instalments past their due date, late fees included
    overdue_instalments: int
    next_due: InstalmentState | None  # the oldest instalment with something outstanding
    next_due_amount: Decimal | None
    payoff: Decimal
    remaining: int  # instalments with something outstanding


def position(instalments: Sequence[InstalmentState], today: date, policy: PenaltyPolicy) -> Position:
    unpaid = sorted((i for i in instalments if i.outstanding > 0), key=lambda i: (i.due_date, i.emi_number))
    owed = {i.id: i.outstanding + i.penalty_as_of(today, policy) - i.penalty for i in unpaid}
    overdue = [i for i in unpaid if i.due_date < today]
    return Position(
        outstanding_principal=sum((i.principal - i.principal_paid for i in instalments), ZERO),
        overdue_amount=sum((owed[i.id] for i in overdue), ZERO),
        overdue_instalments=len(overdue),
        next_due=unpaid[0] if unpaid else None,
        next_due_amount=owed[unpaid[0].id] if unpaid else None,
        payoff=payoff(instalments, today, policy),
        remaining=len(unpaid),
    )
