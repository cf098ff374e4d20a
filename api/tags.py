"""The OpenAPI tags: the spec's sections, one name each, imported by every router (`tags=[Tag.X]`)."""

from __future__ import annotations

from enum import StrEnum


class Tag(StrEnum):
    AUTHENTICATION = "Authentication"
    BATTERY_MANAGEMENT = "Battery Management"
    CONSUMER_MANAGEMENT = "Consumer Management"
    FINANCE_MANAGEMENT = "Finance Management"
    NBFC_INTEGRATION = "NBFC Integration"
    SERVICE_MANAGEMENT = "Service Management"
    ANALYTICS_REPORTING = "Analytics & Reporting"
    COMMUNICATION_SERVICES = "Communication Services"
    BATTERY_PACKS = "Battery Packs"
    COMMANDS = "Commands"
    TELEMETRY = "Telemetry"


_DESCRIPTIONS = {
    Tag.AUTHENTICATION: "Phone + OTP login, then a JWT for the `Authorization: Bearer` header",
    Tag.BATTERY_MANAGEMENT: "Batteries, their latest telemetry, control state and health",
    Tag.CONSUMER_MANAGEMENT: "Consumers of a dealership, KYC and documents",
    Tag.FINANCE_MANAGEMENT: "Finance applications, EMI schedules, payments and overdue accounts",
    Tag.NBFC_INTEGRATION: "Lenders: application submission, webhooks and portfolio",
    Tag.SERVICE_MANAGEMENT: "Service tickets and technicians",
    Tag.ANALYTICS_REPORTING: "Dashboards and reports",
    Tag.COMMUNICATION_SERVICES: "SMS and notifications",
    Tag.BATTERY_PACKS: "Battery-pack asset management (irasus-battery-pack-api)",
    Tag.COMMANDS: "Remote enable/disable: commands, their lifecycle and bulk roll-outs",
    Tag.TELEMETRY: "Telemetry history and rollups",
}

# `openapi_tags` of the app: the spec's order, then the asset and device sections.
OPENAPI_TAGS = [{"name": tag.value, "description": _DESCRIPTIONS[tag]} for tag in Tag]
