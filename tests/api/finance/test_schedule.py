"""EMI schedules and payment allocation (api/finance/schedule.py): the maths, without a database."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.finance.schedule import (
    ZERO,
    InstalmentState,
    PenaltyPolicy,
    add_months,
    allocate,
    emi,
    future_after_prepayment,
    payoff,
    reschedule,
    schedule,
)

principals = st.decimals(min_value=Decimal("100.00"), max_value=Decimal("10000000.00"), places=2)
rates = st.decimals(min_value=Decimal("0.00"), max_value=Decimal("60.00"), places=2)
tenures = st.integers(min_value=1, max_value=84)
starts = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))


def closed_form(principal: Decimal, rate: Decimal, months: int) -> Decimal:
    """P·r·(1+r)^n / ((1+r)^n − 1) at 60 digits, rounded to the paisa half up."""
    with localcontext() as ctx:
        ctx.prec = 60
        r = rate / Decimal(1200)
        if r == 0:
            value = principal / months
        else:
            growth = (1 + r) ** months
            value = principal * r * growth / (growth - 1)
        return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def states(rows: list, *, paid_through: int = 0) -> list[InstalmentState]:
    return [
        InstalmentState(
            id=r.emi_number,
            emi_number=r.emi_number,
            due_date=r.due_date,
            principal=r.principal,
            interest=r.interest,
            principal_paid=r.principal if r.emi_number <= paid_through else ZERO,
            interest_paid=r.interest if r.emi_number <= paid_through else ZERO,
        )
        for r in rows
    ]


def test_the_issue_example() -> None:
    assert emi(Decimal("45000"), Decimal("12.5"), 24) == Decimal("2128.83")
    rows = schedule(Decimal("45000"), Decimal("12.5"), 24, date(2024, 1, 15))
    assert (rows[0].interest, rows[0].principal) == (Decimal("468.75"), Decimal("1660.08"))
    assert sum(r.principal for r in rows) == Decimal("45000.00")
    assert [r.due_date for r in rows[:2]] == [date(2024, 2, 15), date(2024, 3, 15)]


@settings(max_examples=300, deadline=None)
@given(principal=principals, rate=rates, months=tenures, start=starts)
def test_schedule_properties(principal: Decimal, rate: Decimal, months: int, start: date) -> None:
    amount = emi(principal, rate, months)
    assert amount == closed_form(principal, rate, months)
    rows = schedule(principal, rate, months, start)
    assert len(rows) == months
    assert sum(r.principal for r in rows) == principal
    assert all(r.principal > 0 and r.interest >= 0 for r in rows)
    assert all(r.principal.as_tuple().exponent >= -2 and r.interest.as_tuple().exponent >= -2 for r in rows)
    assert all(r.amount == amount for r in rows[:-1])
    # only rounding separates the last instalment from the EMI: the EMI's and each interest's half
    # paisa, grown at the loan's rate over the remaining months
    drift = Decimal("0.01") * months * (1 + rate / 1200) ** months + Decimal("0.01")
    assert abs(rows[-1].amount - amount) <= drift
    if rate == 0:
        assert all(r.interest == 0 for r in rows)
    dates = [r.due_date for r in rows]
    assert dates == sorted(set(dates)) and dates[0] > start


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (date(2024, 1, 31), [date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)]),
        (date(2023, 1, 31), [date(2023, 2, 28), date(2023, 3, 31), date(2023, 4, 30)]),
        (date(2024, 1, 30), [date(2024, 2, 29), date(2024, 3, 30), date(2024, 4, 30)]),
        (date(2024, 12, 31), [date(2025, 1, 31), date(2025, 2, 28), date(2025, 3, 31)]),
        (date(2024, 11, 15), [date(2024, 12, 15), date(2025, 1, 15), date(2025, 2, 15)]),
    ],
)
def test_due_dates_clamp_to_the_month_end(start: date, expected: list[date]) -> None:
    assert [add_months(start, k) for k in (1, 2, 3)] == expected
    rows = schedule(Decimal("1000"), Decimal("10"), 3, start)
    assert [r.due_date for r in rows] == expected


@given(start=starts, months=st.integers(min_value=0, max_value=84 * 2))
def test_add_months_keeps_the_day_or_the_month_end(start: date, months: int) -> None:
    due = add_months(start, months)
    assert (due.year * 12 + due.month) - (start.year * 12 + start.month) == months
    assert due.day == start.day or (due.day < start.day and (due + timedelta(days=1)).day == 1)


def test_zero_rate() -> None:
    rows = schedule(Decimal("1000.00"), Decimal("0"), 3, date(2024, 1, 1))
    assert [r.principal for r in rows] == [Decimal("333.33"), Decimal("333.33"), Decimal("333.34")]
    assert all(r.interest == 0 for r in rows)


def _loan(months: int = 6) -> list[InstalmentState]:
    return states(schedule(Decimal("12000.00"), Decimal("12"), months, date(2024, 1, 10)))


def test_allocation_pays_the_oldest_due_first_interest_before_principal() -> None:
    loan = _loan()
    on = date(2024, 3, 20)  # instalments 1 and 2 are due
    split = allocate(loan, Decimal("2300.00"), on, PenaltyPolicy())
    first, second = split.allocations
    assert first.instalment_id == 1 and first.total == loan[0].amount
    assert second.instalment_id == 2
    assert second.interest == loan[1].interest  # interest of the second before its principal
    assert second.principal == Decimal("2300.00") - loan[0].amount - loan[1].interest
    assert split.prepaid == 0 and split.excess == 0


def test_partial_payment_stays_on_the_instalment() -> None:
    loan = _loan()
    split = allocate(loan, Decimal("50.00"), date(2024, 2, 10), PenaltyPolicy())
    assert split.allocations == [split.allocations[0]]
    assert (split.allocations[0].interest, split.allocations[0].principal) == (Decimal("50.00"), ZERO)


def test_penalty_is_paid_first_once_charged() -> None:
    loan = _loan()
    policy = PenaltyPolicy(fee=Decimal("100"), percent=Decimal("1"), after_days=3)
    assert allocate(loan, Decimal("10"), date(2024, 2, 13), policy).penalties_charged == {}  # 3 days: not yet
    split = allocate(loan, Decimal("150.00"), date(2024, 2, 14), policy)
    fee = Decimal("100") + (loan[0].amount / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert split.penalties_charged == {1: fee}
    assert split.allocations[0].penalty == fee
    assert split.allocations[0].interest == Decimal("150.00") - fee


def test_overpayment_prepays_and_the_schedule_shortens_keeping_the_emi() -> None:
    loan = _loan(12)
    emi_amount = loan[0].amount
    on = date(2024, 2, 10)  # the first instalment is due
    split = allocate(loan, Decimal("5000.00"), on, PenaltyPolicy())
    assert split.prepaid == Decimal("5000.00") - emi_amount and split.excess == 0
    paid = states(schedule(Decimal("12000.00"), Decimal("12"), 12, date(2024, 1, 10)), paid_through=1)
    replaced, new = future_after_prepayment(
        paid,
        prepaid=split.prepaid,
        on=on,
        annual_percent=Decimal("12"),
        emi_amount=emi_amount,
        start=date(2024, 1, 10),
    )
    assert [i.emi_number for i in replaced] == list(range(2, 13))
    assert sum(r.principal for r in new) == sum(i.principal for i in replaced) - split.prepaid
    assert len(new) < len(replaced) and new[0].emi_number == 2
    assert all(r.amount == emi_amount for r in new[:-1]) and new[-1].amount <= emi_amount
    assert new[0].due_date == date(2024, 3, 10)


def test_more_than_the_payoff_is_excess() -> None:
    loan = _loan()
    on = date(2024, 2, 10)
    owed = payoff(loan, on, PenaltyPolicy())
    assert owed == loan[0].amount + sum(i.principal for i in loan[1:])
    split = allocate(loan, owed + Decimal("1.00"), on, PenaltyPolicy())
    assert split.excess == Decimal("1.00")
    assert split.prepaid == sum(i.principal for i in loan[1:])


@settings(max_examples=200, deadline=None)
@given(
    principal=principals,
    rate=rates,
    months=st.integers(min_value=2, max_value=84),
    fraction=st.floats(min_value=0.001, max_value=1.5),
    due=st.integers(min_value=0, max_value=84),
)
def test_allocation_conserves_money_and_keeps_order(
    principal: Decimal, rate: Decimal, months: int, fraction: float, due: int
) -> None:
    start = date(2024, 1, 31)
    loan = states(schedule(principal, rate, months, start))
    on = add_months(start, min(due, months))
    owed = payoff(loan, on, PenaltyPolicy())
    amount = max(Decimal("0.01"), (owed * Decimal(str(fraction))).quantize(Decimal("0.01")))
    split = allocate(loan, amount, on, PenaltyPolicy())
    assert sum((a.total for a in split.allocations), ZERO) + split.prepaid + split.excess == amount
    by_id = {i.id: i for i in loan}
    for a in split.allocations:
        inst = by_id[a.instalment_id]
        assert inst.due_date <= on and a.interest <= inst.interest and a.principal <= inst.principal
        assert a.principal == 0 or a.interest == inst.interest  # interest before principal
    for earlier, later in zip(split.allocations, split.allocations[1:], strict=False):
        assert earlier.total == by_id[earlier.instalment_id].amount  # only the last one is partial
        assert by_id[earlier.instalment_id].due_date <= by_id[later.instalment_id].due_date
    if split.prepaid > 0:  # only once everything due is paid
        assert sum(a.total for a in split.allocations) == sum(i.amount for i in loan if i.due_date <= on)
    assert split.excess == max(amount - owed, ZERO)


@settings(max_examples=100, deadline=None)
@given(principal=principals, rate=rates, months=tenures)
def test_reschedule_of_the_whole_balance_repays_it_at_the_emi(
    principal: Decimal, rate: Decimal, months: int
) -> None:
    amount = emi(principal, rate, months)
    rows = reschedule(principal, rate, amount, start=date(2024, 1, 1), first_number=1)
    assert sum(r.principal for r in rows) == principal
    assert all(r.amount == amount for r in rows[:-1]) and rows[-1].amount <= amount
    assert months <= len(rows) <= months + 1  # a rounding residue may take one more, tiny, instalment
