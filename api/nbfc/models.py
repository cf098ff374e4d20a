"""Request bodies and answers of the NBFC Integration API, in the spec's shapes."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.finance.models import ApplicationCreate, ApplicationStatus, Id, Money
from api.shapes import Body, decimal_input
from schemas.dates import CalendarDate


class NbfcApplicationCreate(ApplicationCreate):
    nbfc_id: Id | None = Field(default=None, description="the lender; may be left out when there is one")


class SubmittedApplication(BaseModel):
    id: int
    consumer_id: int
    battery_id: int
    amount: Money
    tenure_months: int
    interest_rate: Money
    dealer_id: int
    nbfc_id: int
    status: ApplicationStatus
    submitted_at: datetime
    delivery: Literal["queued", "sending", "sent", "failed"] = Field(description="the call to the lender")


class SubmitResult(BaseModel):
    success: bool
    application: SubmittedApplication
    message: str


class WebhookApplication(BaseModel):
    id: int
    status: ApplicationStatus
    sanctioned_amount: Money | None = None
    interest_rate: Money | None = None
    emi_amount: Money | None = Field(default=None, description="the EMI of our reducing-balance schedule")
    loan_id: int | None = None


class WebhookResult(BaseModel):
    success: bool
    message: str
    application: WebhookApplication


class PortfolioSummary(BaseModel):
    total_applications: int
    approved_count: int
    disbursed_count: int
    rejected_count: int
    total_disbursed: Money
    avg_interest_rate: Money | None


class MonthTrend(BaseModel):
    month: date
    applications: int
    amount_disbursed: Money


class PortfolioHealth(BaseModel):
    approval_rate: str = Field(examples=["85.0"], description="% of the applications approved")
    disbursement_rate: str = Field(examples=["75.0"], description="% of the applications disbursed")


class Portfolio(BaseModel):
    portfolio_summary: PortfolioSummary
    monthly_trend: list[MonthTrend]
    portfolio_health: PortfolioHealth


# Rupees to the paisa, [0, 10^10], as a number or as text ("" was documented valid and refused).
CollectedAmount = Annotated[
    Decimal,
    Field(ge=0, le=10_000_000_000, decimal_places=2),
    *decimal_input(
        {"minimum": 0, "maximum": 10_000_000_000, "multipleOf": 0.01},
        r"(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?|10000000000(\.00?)?",
    ),
]


class CollectionData(Body):
    model_config = ConfigDict(extra="forbid")

    total_collections: int = Field(ge=0, le=10_000_000)
    amount_collected: CollectedAmount
    overdue_count: int = Field(ge=0, le=10_000_000)


class CollectionReportSubmit(Body):
    """A day's collections for a lender. The figures are computed from the recorded payments; when
    `collection_data` is sent as well, it must agree with them."""

    model_config = ConfigDict(extra="forbid")

    report_date: CalendarDate
    collection_data: CollectionData | None = None
    nbfc_id: Id | None = Field(default=None, description="the lender; may be left out when there is one")
    dealer_id: Id | None = Field(default=None, description="admin only: the dealer reported on")


class LenderAnswer(BaseModel):
    success: bool
    report_id: str | None
    status: Literal["queued", "submitted", "failed"]
    message: str


class StoredReport(BaseModel):
    id: int
    dealer_id: int
    nbfc_id: int
    report_date: date
    collection_data: str = Field(description="the figures sent, as JSON text")
    nbfc_response: str | None = Field(description="the lender's answer, as JSON text, once delivered")
    created_at: datetime


class CollectionReportResult(BaseModel):
    success: bool
    message: str
    report: StoredReport
    nbfc_response: LenderAnswer
