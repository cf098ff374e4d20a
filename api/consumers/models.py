"""Request bodies and answers of the Consumer API; identity numbers leave here masked."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from api.auth.tokens import Principal
from api.consumers.kyc import mask_aadhaar, mask_tail, normalise_aadhaar, normalise_pan

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
_AADHAAR = AliasChoices("aadhar", "aadhaar")  # the spec spells it "aadhar"; accept both


class _Identity(BaseModel):
    pan: str | None = None
    aadhar: str | None = Field(default=None, validation_alias=_AADHAAR)

    @field_validator("pan")
    @classmethod
    def _pan(cls, value: str | None) -> str | None:
        return None if value is None else normalise_pan(value)

    @field_validator("aadhar")
    @classmethod
    def _aadhaar(cls, value: str | None) -> str | None:
        return None if value is None else normalise_aadhaar(value)


class ConsumerCreate(_Identity):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")
    dealer_id: int | None = Field(default=None, description="admin only: the consumer's dealer")


class KycUpdate(_Identity):
    model_config = ConfigDict(extra="forbid")

    kyc_status: Literal["pending", "verified", "rejected"]


class DocumentLink(BaseModel):
    """The spec's JSON variant: a document kept elsewhere, given by its URL."""

    model_config = ConfigDict(extra="forbid")

    document_type: str
    document_url: str = Field(pattern=r"^https?://\S+$", max_length=2000)
    document_number: str | None = Field(default=None, max_length=64)


def normalise_document_type(value: str) -> str:
    kind = value.strip().lower().replace("aadhar_card", "aadhaar_card")
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
