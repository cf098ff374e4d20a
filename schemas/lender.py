"""The lender (NBFC) contract: what we send to a lender's API and how it signs its webhooks to us.

Our calls: `POST {base}/applications` and `POST {base}/collection-reports`, JSON, with
`Authorization: Bearer <api key>` and an `Idempotency-Key` header that is the same on every retry
of one call, so the lender creates one object however often it hears it. The lender answers
2xx with `{"reference": ...}` (its id for what it created); 4xx (except 408 and 429) refuses the
call for good, anything else is retried.

Its webhooks: `POST /api/nbfc/webhook-status` with `X-NBFC-Id` (the lender's code),
`X-NBFC-Timestamp` (Unix seconds), `X-NBFC-Event-Id` (the same on every delivery of one event)
and `X-NBFC-Signature: sha256=<hex>`, the HMAC-SHA256 with the lender's secret of
`"<timestamp>." + raw body`. A timestamp more than the tolerance away from our clock, a wrong
signature, or the very same signed request again is refused (401).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LENDER_HEADER = "X-NBFC-Id"
TIMESTAMP_HEADER = "X-NBFC-Timestamp"
SIGNATURE_HEADER = "X-NBFC-Signature"
EVENT_HEADER = "X-NBFC-Event-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_PREFIX = "sha256="
APPLICATIONS_PATH = "/applications"
COLLECTION_REPORTS_PATH = "/collection-reports"

# Statuses a lender reports; "sanctioned" is the same as "approved".
WebhookStatus = Literal["under_review", "approved", "sanctioned", "rejected", "disbursed"]


class ApplicationSubmission(BaseModel):
    """What we send a lender for one application."""

    application_id: int
    dealer_id: int
    consumer_name: str
    consumer_phone: str
    battery_serial: str
    amount: Decimal
    tenure_months: int
    interest_rate: Decimal


class CollectionReportSubmission(BaseModel):
    report_id: int
    dealer_id: int
    report_date: date
    total_collections: int
    amount_collected: Decimal
    overdue_count: int


class LenderReceipt(BaseModel):
    """A lender's answer to one of our calls."""

    reference: str = Field(min_length=1, max_length=200)
    status: str = "received"


class WebhookEvent(BaseModel):
    """A lender's decision about an application (the spec's body)."""

    model_config = ConfigDict(extra="ignore")

    applicationId: int = Field(
        strict=True, ge=1, le=2**53 - 1
    )  # the API's ids: exact as a JSON number (api.shapes)
    status: WebhookStatus
    sanctionedAmount: Decimal | None = Field(default=None, gt=0, le=10_000_000, decimal_places=2)
    interestRate: Decimal | None = Field(default=None, ge=0, le=60, decimal_places=2)
    tenureMonths: int | None = Field(default=None, strict=True, ge=1, le=84)  # not true/false
    emiAmount: Decimal | None = Field(default=None, ge=0, le=10_000_000)
    disbursementDate: date | None = None
    reason: str | None = Field(default=None, max_length=500)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-NBFC-Signature` value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


class BadSignature(Exception):
    """The webhook is unsigned, badly signed, or stale."""


def verify(
    secret: str, *, timestamp: str | None, signature: str | None, body: bytes, now: float, tolerance_s: float
) -> None:
    """Raise BadSignature unless the signature is the secret's for this body and timestamp, and the
    timestamp is within the tolerance of `now` (compared in constant time)."""
    if not timestamp or not signature:
        raise BadSignature("unsigned")
    try:
        sent = int(timestamp)
    except ValueError:
        raise BadSignature("malformed timestamp") from None
    if abs(now - sent) > tolerance_s:
        raise BadSignature("stale timestamp")
    if not hmac.compare_digest(sign(secret, sent, body).encode(), signature.strip().encode()):
        raise BadSignature("bad signature")
