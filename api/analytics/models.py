"""Answers of the Analytics & Reporting API, exactly in the spec's shapes.

Percentages are strings with one decimal and a `%` ("83.3%"), durations strings in days with one
decimal ("2.5 days"), as in the spec; a figure with nothing to compute it from (an average over no
tickets) is null.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.finance.models import Money
from api.shapes import MAX_ID
from schemas.dates import CalendarDate

Percent = Annotated[str, Field(pattern=r"^\d{1,3}\.\d%$", examples=["83.3%"])]
Days = Annotated[str, Field(pattern=r"^\d+\.\d days$", examples=["2.5 days"])]


class ReportFilters(BaseModel):
    """The query of a report: whose figures (admin only) and the period."""

    dealer_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="admin only: one dealer's figures"
    )
    start: CalendarDate | None = Field(
        default=None, alias="from", description="first day of the period (UTC)"
    )
    end: CalendarDate | None = Field(default=None, alias="to", description="last day of the period (UTC)")


class LenderReportFilters(ReportFilters):
    nbfc_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="admin only: one NBFC's figures")


def percent(part: int | float | Decimal, whole: int | float | Decimal) -> str | None:
    return None if not whole else f"{100 * float(part) / float(whole):.1f}%"


def days(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds / 86400:.1f} days"


# --- battery health -------------------------------------------------------------------------------


class HealthBand(BaseModel):
    count: int
    percentage: Percent | None = Field(description="of the batteries in scope; null when there are none")
    avg_health: float | None


class FleetHealthBands(BaseModel):
    """Bands of health_score: excellent ≥ 90, good 75-90, fair 60-75, poor < 60."""

    excellent: HealthBand
    good: HealthBand
    fair: HealthBand
    poor: HealthBand


class HealthTrend(BaseModel):
    month: str = Field(pattern=r"^\d{4}-\d{2}$", examples=["2024-01"])
    avg_health: float | None = Field(description="mean of the batteries' daily health estimates that month")
    maintenance_count: int = Field(description="service tickets opened that month")


class PredictiveMaintenance(BaseModel):
    batteries_needing_service: int = Field(
        description="health below the service threshold, or an anomaly in the latest readings"
    )
    estimated_service_cost: Money = Field(description="batteries needing service × the visit cost setting")
    risk_batteries: int = Field(
        description="not yet needing service, but crossing the threshold within the horizon"
    )


class BatteryHealthAnalytics(BaseModel):
    fleet_health: FleetHealthBands
    health_trends: list[HealthTrend]
    predictive_maintenance: PredictiveMaintenance


# --- service metrics ------------------------------------------------------------------------------


class TicketMetrics(BaseModel):
    total_tickets: int
    open_tickets: int
    assigned_tickets: int
    in_progress_tickets: int
    resolved_tickets: int = Field(description="resolved or closed")


class ResolutionTimes(BaseModel):
    avg_resolution_time: Days | None = Field(description="from opening to resolution")
    fastest_resolution: Days | None
    slowest_resolution: Days | None
    sla_compliance: Percent | None = Field(description="resolved before their priority's SLA ran out")


class TechnicianPerformance(BaseModel):
    technician_id: int
    name: str
    tickets_resolved: int
    avg_resolution_time: Days | None
    customer_satisfaction: float | None = Field(description="mean rating (1-5) of consumers' feedback")


class IssueCategories(BaseModel):
    performance: int
    charging: int
    mechanical: int
    electrical: int
    other: int


class ServiceMetrics(BaseModel):
    ticket_metrics: TicketMetrics
    resolution_times: ResolutionTimes
    technician_performance: list[TechnicianPerformance]
    issue_categories: IssueCategories


# --- dealer dashboard -----------------------------------------------------------------------------


class ConsumerMetrics(BaseModel):
    total_consumers: int
    verified_consumers: int = Field(description="KYC verified")
    pending_consumers: int = Field(description="KYC pending")


class BatteryMetrics(BaseModel):
    total_batteries: int
    active_batteries: int
    maintenance_batteries: int
    avg_health_score: float | None


class FinanceMetrics(BaseModel):
    total_applications: int
    approved_applications: int = Field(description="approved, including those since disbursed")
    disbursed_applications: int
    total_disbursed: Money = Field(description="principal of the loans disbursed")


class DashboardServiceMetrics(BaseModel):
    total_tickets: int
    resolved_tickets: int = Field(description="resolved or closed")
    avg_resolution_time: Days | None


class DealerDashboard(BaseModel):
    consumer_metrics: ConsumerMetrics
    battery_metrics: BatteryMetrics
    finance_metrics: FinanceMetrics
    service_metrics: DashboardServiceMetrics


# --- NBFC portfolio -------------------------------------------------------------------------------


class PortfolioSummary(BaseModel):
    total_applications: int
    approval_rate: Percent | None = Field(description="approved (or since disbursed) of all applications")
    disbursement_rate: Percent | None = Field(description="disbursed of all applications")
    total_disbursed: Money
    avg_loan_amount: Money | None = Field(description="mean principal of the loans disbursed")


class MonthlyPortfolio(BaseModel):
    month: str = Field(pattern=r"^\d{4}-\d{2}$", examples=["2024-01"])
    applications: int = Field(description="opened that month")
    approvals: int = Field(description="approved that month")
    disbursements: int = Field(description="loans disbursed that month")
    amount: Money = Field(description="their principal")


class RiskMetrics(BaseModel):
    overdue_rate: Percent | None = Field(description="running loans with an instalment past due")
    collection_efficiency: Percent | None = Field(description="EMI amounts collected of those due so far")
    avg_credit_score: float | None = Field(
        description="always null: no credit score is recorded with applications or loans"
    )


class NbfcPortfolioAnalytics(BaseModel):
    portfolio_summary: PortfolioSummary
    monthly_trends: list[MonthlyPortfolio]
    risk_metrics: RiskMetrics


# --- collections ----------------------------------------------------------------------------------


class CollectionSummary(BaseModel):
    total_emi_due: int = Field(description="instalments due in the period, up to today")
    collected_emi: int = Field(description="of those, fully paid")
    overdue_emi: int = Field(description="of those, unpaid and past due")
    collection_rate: Percent | None
    total_amount_due: Money
    amount_collected: Money


class DailyCollection(BaseModel):
    date: date
    collections: int = Field(description="payments recorded (reversed ones excluded)")
    amount: Money
    overdue_collections: int = Field(description="payments that paid an instalment already past due")


class OverdueAnalysis(BaseModel):
    """Unpaid instalments of the period by days past due."""

    model_config = ConfigDict(populate_by_name=True)

    days_1_7: int = Field(alias="1-7_days")
    days_8_15: int = Field(alias="8-15_days")
    days_over_15: int = Field(alias="15+_days", description="more than 15 days")
    total_overdue: int


class CollectionAnalytics(BaseModel):
    collection_summary: CollectionSummary
    daily_collections: list[DailyCollection]
    overdue_analysis: OverdueAnalysis
