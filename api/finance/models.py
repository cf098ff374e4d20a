"""Request bodies and answers of the Finance Management API, in the spec's shapes.

Money is Decimal throughout. Where the spec writes an amount as a JSON number (an application's
`amount`, a report's totals) it leaves as a number (`Money`); where it writes a string ("1875.00",
an EMI's `amount`) it leaves as a string with two decimals (`MoneyText`), as do the amounts of the
loan and payment endpoints, which are exact to the paisa.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from api.shapes import MAX_ID, Body, decimal_input
from schemas.dates import CalendarDate

MAX_AMOUNT = Decimal("10000000")  # one crore


def json_number(value: Decimal) -> int | float:
    """An amount as a JSON number: whole rupees as an integer (45000), else a float (2128.83).

    A float holds every amount to the paisa below 10^13 exactly enough to print it back unchanged.
    """
    return int(value) if value == value.to_integral_value() else float(value)


# Serialized as written (an int stays an int), documented as a number.
Money = Annotated[
    Decimal,
    PlainSerializer(json_number, return_type=Any, when_used="json"),
    WithJsonSchema({"type": "number", "examples": [45000]}, mode="serialization"),
]
MoneyText = Annotated[
    Decimal,
    PlainSerializer(lambda v: f"{v:.2f}", return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "pattern": r"^-?\d+\.\d{2}$", "examples": ["2128.83"]}, mode="serialization"
    ),
]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# As text: (0, one crore] and [0, 60], to the paisa / hundredth of a percent.
AMOUNT_TEXT = r"[1-9][0-9]{0,6}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?)|10000000(\.00?)?"
RATE_TEXT = r"[1-5]?[0-9](\.[0-9]{1,2})?|60(\.00?)?"
AmountIn = Annotated[
    Decimal,
    Field(gt=0, le=MAX_AMOUNT, decimal_places=2, description="rupees, to the paisa", examples=[45000]),
    *decimal_input({"exclusiveMinimum": 0, "maximum": int(MAX_AMOUNT), "multipleOf": 0.01}, AMOUNT_TEXT),
]
RateIn = Annotated[
    Decimal,
    Field(ge=0, le=60, decimal_places=2, description="annual %, reducing balance", examples=[12.5]),
    *decimal_input({"minimum": 0, "maximum": 60, "multipleOf": 0.01}, RATE_TEXT),
]
TenureIn = Annotated[int, Field(ge=1, le=84, description="months", examples=[24])]
Reference = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9/_.:-]{0,63}$",
        description="receipt number or bank/UPI transaction id; unique per dealer",
        examples=["UPI-412345678901"],
    ),
]
ApplicationStatus = Literal["pending", "submitted", "under_review", "approved", "rejected", "disbursed"]
InstalmentStatus = Literal["pending", "partial", "paid"]
PaymentMethod = Literal["cash", "upi", "bank_transfer", "cheque", "card", "nach", "other"]


class ApplicationCreate(Body):
    model_config = ConfigDict(extra="forbid")

    consumer_id: Id
    battery_id: Id
    amount: AmountIn
    tenure_months: TenureIn
    interest_rate: RateIn


class ApplicationDecision(Body):
    """Approve (with the terms; those left out stay as applied for) or reject."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["approved", "rejected"]
    approved_amount: AmountIn | None = None
    interest_rate: RateIn | None = None
    tenure_months: TenureIn | None = None
    note: str | None = Field(default=None, min_length=1, max_length=500)


class DisbursementRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disbursement_date: CalendarDate = Field(description="the due dates then run monthly from it")


class Application(BaseModel):
    id: int
    consumer_id: int
    battery_id: int
    battery_serial: str
    dealer_id: int
    amount: Money
    tenure_months: int
    interest_rate: Money
    status: ApplicationStatus
    approved_amount: Money | None = None
    nbfc_id: int | None = None
    loan_id: int | None = None
    decision_note: str | None = None
    decided_at: datetime | None = None
    submitted_at: datetime | None = None
    disbursement_date: date | None = None
    created_at: datetime


class EmiInstalment(BaseModel):
    """One instalment of a loan's schedule, with what is paid of it and what is overdue."""

    id: int
    emi_number: int
    due_date: date
    amount: MoneyText = Field(description="principal + interest")
    principal: MoneyText
    interest: MoneyText
    penalty: MoneyText = Field(description="late fee charged (or due today under the late-fee policy)")
    paid: MoneyText
    outstanding: MoneyText
    overdue_amount: MoneyText = Field(description="the outstanding amount once the due date has passed")
    overdue_days: int
    status: InstalmentStatus
    paid_at: datetime | None = None


class LoanSummary(BaseModel):
    id: int
    application_id: int
    consumer_id: int
    dealer_id: int
    battery_id: int
    battery_serial: str
    nbfc_id: int | None = None
    principal: MoneyText
    interest_rate: Money
    tenure_months: int = Field(description="as approved; prepayments shorten the schedule")
    emi: MoneyText
    schedule_start: date
    disbursement_date: date | None = None
    status: Literal["active", "closed"]
    outstanding_principal: MoneyText
    overdue_amount: MoneyText
    overdue_instalments: int
    next_due_date: date | None = None
    next_due_amount: MoneyText | None = None
    payoff_amount: MoneyText = Field(description="what closes the loan today")
    remaining_instalments: int
    battery_disabled_for_overdue: bool
    created_at: datetime


class Loan(LoanSummary):
    instalments: list[EmiInstalment]


class PaymentCreate(Body):
    model_config = ConfigDict(extra="forbid")

    reference: Reference
    amount: AmountIn
    paid_on: CalendarDate | None = Field(
        default=None, description="the day the money was received; default today"
    )
    method: PaymentMethod = "cash"


class PaymentReversal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, examples=["entered against the wrong loan"])


class PaymentAllocation(BaseModel):
    instalment_id: int
    emi_number: int
    penalty: MoneyText
    interest: MoneyText
    principal: MoneyText


class Payment(BaseModel):
    id: int
    loan_id: int
    reference: str
    amount: MoneyText
    paid_on: date
    method: PaymentMethod
    status: Literal["recorded", "reversed"]
    allocations: list[PaymentAllocation]
    prepaid_principal: MoneyText = Field(description="beyond the due instalments: reduces the principal")
    recorded_by: str
    recorded_at: datetime
    reversed_at: datetime | None = None
    reversal_reason: str | None = None


class PaymentResult(BaseModel):
    """A recorded (or reversed) payment and the loan after it; `enable_command_id` when the payment
    cleared the overdue of a battery disabled for it."""

    payment: Payment
    loan: LoanSummary
    enable_command_id: str | None = None


class OverdueAccount(BaseModel):
    id: int = Field(description="the instalment")
    loan_id: int
    emi_number: int
    due_date: date
    amount: MoneyText = Field(description="the instalment's amount")
    outstanding: MoneyText = Field(description="what is still owed on it, late fee included")
    status: InstalmentStatus
    loan_amount: Money
    tenure_months: int
    consumer_id: int
    consumer_name: str
    consumer_phone: str
    battery_serial: str
    dealer_id: int
    overdue_days: int


class OverdueAccounts(BaseModel):
    overdue_accounts: list[OverdueAccount]
    total_overdue: int
    total_overdue_amount: Money


class AutoDisableRequest(Body):
    model_config = ConfigDict(extra="forbid")

    overdue_days_threshold: int | None = Field(
        default=None,
        ge=1,
        le=365,
        description="default PACKFLEET_FINANCE_OVERDUE_THRESHOLD_DAYS",
        examples=[7],
    )


class DisabledBattery(BaseModel):
    battery_serial: str
    loan_id: int
    instalment_id: int
    overdue_days: int
    spec: Literal["charging", "both"]
    command_id: str


class DeferredBattery(BaseModel):
    battery_serial: str
    loan_id: int
    reason: Literal["awaiting_warning_grace", "moving", "disabled_by_operator"] = Field(
        description="warned too recently; moving (charging cut, discharge at rest); an operator's disable"
    )


class AutoDisableResult(BaseModel):
    message: str
    disabled_count: int
    disabled_batteries: list[str]
    command_ids: list[str]
    disabled: list[DisabledBattery]
    warned_count: int = Field(description="consumers warned by SMS in this run")
    deferred: list[DeferredBattery] = Field(description="overdue beyond the threshold, not disabled yet")
    bulk_ids: list[str] = Field(description="the roll-outs, one per spec (GET /api/commands/bulk/{id})")


class CollectionDay(BaseModel):
    collection_date: date
    collections_count: int
    total_collected: Money
    avg_collection: Money


class CollectionSummary(BaseModel):
    total_collections: int
    total_amount_collected: Money
    avg_daily_collection: Money = Field(description="the amount collected over the days of the period")


class CollectionReport(BaseModel):
    collection_report: list[CollectionDay]
    summary: CollectionSummary
    start_date: date
    end_date: date


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    application_id: int | None = None
    loan_id: int | None = None
    instalment_id: int | None = None
    payment_id: int | None = None
    battery_id: int | None = None
    command_id: str | None = None
    detail: dict[str, Any]
