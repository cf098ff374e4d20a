"""Request bodies and answers of the Consumer API; identity numbers leave here masked."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from api.auth.models import E164
from api.auth.tokens import Principal
from api.batteries.models import BatteryStatus
from api.consumers.kyc import (
    AADHAAR_PATTERN,
    PAN_PATTERN,
    mask_aadhaar,
    mask_tail,
    normalise_aadhaar,
    normalise_pan,
)
from api.shapes import Body, DecimalString, Id, Number, Shape

DOCUMENT_TYPES = (
    "pan_card",
    "aadhaar_card",
    "photo",
    "address_proof",
    "bank_statement",
    "driving_license",
    "vehicle_rc",
    "other",
)
DocumentType = Literal[DOCUMENT_TYPES]  # type: ignore[valid-type]
KycStatus = Literal["pending", "verified", "rejected"]
_AADHAAR = AliasChoices("aadhar", "aadhaar")  # the spec spells it "aadhar"; accept both
# Patterns for the document (the validators below say what is wrong in words, and check more).
_PAN_DOC = {"pattern": PAN_PATTERN, "examples": ["ABCDE1234F"]}
_AADHAAR_DOC = {
    "pattern": AADHAAR_PATTERN,
    "examples": ["234567890124"],
    "description": "12 digits, not starting with 0 or 1, with a valid Verhoeff check digit "
    "(spaces or dashes between groups of four are accepted); stored encrypted, answered masked",
}


def _canonical_type(value: Any) -> Any:
    return value.strip().lower().replace("aadhar_card", "aadhaar_card") if isinstance(value, str) else value


class _Identity(Body):
    pan: str | None = Field(default=None, max_length=20, json_schema_extra=_PAN_DOC)
    aadhar: str | None = Field(
        default=None, max_length=20, validation_alias=_AADHAAR, json_schema_extra=_AADHAAR_DOC
    )

    @field_validator("pan")
    @classmethod
    def _pan(cls, value: str | None) -> str | None:
        return None if value is None else normalise_pan(value)

    @field_validator("aadhar")
    @classmethod
    def _aadhaar(cls, value: str | None) -> str | None:
        return None if value is None else normalise_aadhaar(value)


class ConsumerCreate(_Identity):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "Ram Kumar", "phone": "+919876543210", "pan": "ABCDE1234F", "aadhar": "234567890124"}
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*\S[^\x00]*$")
    phone: str = Field(pattern=E164, description="E.164", examples=["+919876543210"])
    dealer_id: Id | None = Field(
        default=None, description="admin only (and then required): the consumer's dealer"
    )


class KycUpdate(_Identity):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"kyc_status": "verified", "pan": "ABCDE1234F", "aadhar": "234567890124"}]
        },
    )

    kyc_status: KycStatus = Field(
        description="`verified` needs a PAN and an Aadhaar number, given or on file"
    )


_NUMBER_BY_TYPE = {"pan_card": PAN_PATTERN, "aadhaar_card": AADHAAR_PATTERN}


def _number_of(kind: str, pattern: str) -> dict[str, Any]:
    number = {"anyOf": [{"type": "string", "pattern": f"{pattern}|^\\s*$"}, {"type": "null"}]}
    return {
        "if": {"properties": {"document_type": {"const": kind}}, "required": ["document_type"]},
        "then": {"properties": {"document_number": number}},
    }


# The JSON and the multipart document bodies: the number's form follows the type.
DOCUMENT_NUMBER_RULES = [_number_of(kind, pattern) for kind, pattern in _NUMBER_BY_TYPE.items()]


class DocumentLink(BaseModel):
    """The spec's JSON variant: a document kept elsewhere, given by its URL."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "document_type": "pan_card",
                    "document_url": "https://storage.example.com/pan_card.jpg",
                    "document_number": "ABCDE1234F",
                }
            ],
            # the number's form follows the type, as normalise_document_number checks it (blank: none)
            "allOf": DOCUMENT_NUMBER_RULES,
        },
    )

    document_type: Annotated[DocumentType, BeforeValidator(_canonical_type)]
    document_url: str = Field(pattern=r"^https?://[^\s\x00]+$", max_length=2000)
    document_number: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[^\x00]*$",
        description="checked as a PAN for `pan_card` and as an Aadhaar number for `aadhaar_card`",
    )


# --- responses ------------------------------------------------------------------------------------


class Consumer(Shape):
    """The spec's consumer object: Aadhaar always masked, PAN masked except for admins."""

    id: Id
    name: str = Field(examples=["Ram Kumar"])
    phone: str = Field(examples=["+919876543210"])
    pan: str | None = Field(examples=["ABCDE1234F"])
    aadhar: str | None = Field(examples=["XXXXXXXX9012"])
    kyc_status: KycStatus
    dealer_id: int
    created_at: datetime


class ConsumerWithDealer(Consumer):
    dealer_name: str = Field(examples=["ABC Motors"])


class ConsumerApplication(Shape):
    """A finance application in the consumer's finance details."""

    id: int
    amount: Number = Field(examples=[45000])
    tenure_months: int = Field(examples=[24])
    status: str = Field(examples=["approved"])
    battery_serial: str | None = Field(examples=["BAT001"])


class ConsumerEmi(Shape):
    """An EMI instalment in the consumer's finance details (amount as a string, as the spec shows)."""

    id: int
    emi_number: int = Field(examples=[1])
    due_date: date
    amount: DecimalString = Field(examples=["1875.00"])
    status: str = Field(examples=["pending"])


class ConsumerFinance(Shape):
    applications: list[ConsumerApplication]
    emi_schedules: list[ConsumerEmi]
    total_applications: int
    total_emi_due: int = Field(description="instalments pending or overdue")


class ProfileBattery(Shape):
    id: int
    serial_number: str
    status: BatteryStatus
    health_score: Number
    service_tickets_count: int
    active_tickets_count: int


class RecentTicket(Shape):
    id: int
    issue_category: str = Field(examples=["performance"])
    status: str = Field(examples=["resolved"])
    battery_serial: str
    created_at: datetime


class ProfileSummary(Shape):
    total_batteries: int
    active_batteries: int
    total_service_tickets: int
    active_service_tickets: int


class ConsumerProfile(Shape):
    """The spec's complete consumer profile."""

    consumer: ConsumerWithDealer
    batteries: list[ProfileBattery]
    recent_tickets: list[RecentTicket]
    summary: ProfileSummary


class Document(Shape):
    """A consumer's document: an uploaded file (fetched from `document_url`) or a link."""

    id: int
    consumer_id: int
    document_type: DocumentType
    document_url: str = Field(examples=["/api/consumers/1/documents/7/file"])
    document_number: str | None = Field(description="masked (always for Aadhaar, for non-admins otherwise)")
    content_type: str | None = Field(examples=["application/pdf"])
    size_bytes: int | None
    sha256: str | None
    uploaded_at: datetime
    status: Literal["pending_verification", "verified", "rejected"]


class DocumentUploaded(Shape):
    message: str = Field(examples=["Document uploaded successfully"])
    document: Document


def normalise_document_type(value: str) -> str:
    kind = _canonical_type(value)
    if kind not in DOCUMENT_TYPES:
        raise ValueError(f"document_type must be one of {', '.join(DOCUMENT_TYPES)}")
    return kind


def normalise_document_number(kind: str, value: str | None) -> str | None:
    """Check the number against its document type (PAN, Aadhaar); strip it otherwise."""
    if value is None or not value.strip():
        return None
    if kind == "pan_card":
        return normalise_pan(value)
    if kind == "aadhaar_card":
        return normalise_aadhaar(value)
    return value.strip()


def consumer_body(row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The spec's consumer object: Aadhaar always masked, PAN masked except for admins."""
    body = {
        "id": row["id"],
        "name": row["name"],
        "phone": row["phone"],
        "pan": row["pan"] if principal.role == "admin" else mask_tail(row["pan"]),
        "aadhar": mask_aadhaar(row["aadhaar_last4"]),
        "kyc_status": row["kyc_status"],
        "dealer_id": row["dealer_id"],
        "created_at": iso(row["created_at"]),
    }
    if "dealer_name" in row:
        body["dealer_name"] = row["dealer_name"]
    return body


def document_body(row: dict[str, Any], *, number: str | None, principal: Principal) -> dict[str, Any]:
    """A document's metadata; its number masked (always for Aadhaar, for non-admins otherwise)."""
    if number is not None and (row["document_type"] == "aadhaar_card" or principal.role != "admin"):
        number = mask_tail(number)
    url = row["document_url"]
    if row["sha256"] is not None:
        url = f"/api/consumers/{row['consumer_id']}/documents/{row['id']}/file"
    return {
        "id": row["id"],
        "consumer_id": row["consumer_id"],
        "document_type": row["document_type"],
        "document_url": url,
        "document_number": number,
        "content_type": row["content_type"],
        "size_bytes": row["size_bytes"],
        "sha256": row["sha256"],
        "uploaded_at": iso(row["uploaded_at"]),
        "status": row["status"],
    }


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
