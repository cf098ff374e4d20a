"""Answers of the Analytics & Reporting API, exactly in the spec's shapes.

Percentages are strings with one decimal and a `%` ("83.3%"), durations strings in days with one
decimal ("2.5 days"), as in the spec; a figure with nothing to compute it from (an average over no
tickets) is null.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer


def json_number(value: Decimal) -> int | float:
    """An amount as a JSON number: whole rupees as an integer, else a float (exact to the paisa)."""
    return int(value) if value == value.to_integral_value() else float(value)


Money = Annotated[Decimal, PlainSerializer(json_number, return_type=float, when_used="json")]
Percent = Annotated[str, Field(pattern=r"^\d{1,3}\.\d%$", examples=["83.3%"])]
Days = Annotated[str, Field(pattern=r"^\d+\.\d days$", examples=["2.5 days"])]


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
