"""Consumer use cases: a dealer reaches only its own consumers, a consumer only themself."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from api.auth import queries as auth_queries
from api.auth.tokens import Principal
from api.consumers import queries, storage
from api.consumers.kyc import cipher
from api.consumers.models import (
    ConsumerCreate,
    KycUpdate,
    consumer_body,
    document_body,
    normalise_document_number,
    normalise_document_type,
)
from api.errors import BadRequest, Conflict, Forbidden, NotFound, UnsupportedMedia
from api.finance import service as finance_service
from api.service import queries as service_queries
from packfleet.settings import Settings

log = logging.getLogger(__name__)

RECENT_TICKETS = 10  # the profile's recent tickets, newest first


def _forbidden() -> Forbidden:
    return Forbidden("Insufficient permissions for this operation")


async def visible_consumer(
    conn: AsyncConnection, *, principal: Principal, consumer_id: int, write: bool = False
) -> dict[str, Any]:
    """The consumer if the caller may reach it (403 for a wrong role, 404 for someone else's)."""
    allowed = ("admin", "dealer") if write else ("admin", "dealer", "consumer")
    if principal.role not in allowed:
        raise _forbidden()
    row = await queries.get_consumer(conn, consumer_id)
    if (
        row is None
        or (principal.role == "dealer" and row["dealer_id"] != principal.dealer_id)
        or (principal.role == "consumer" and row["id"] != principal.consumer_id)
    ):
        raise NotFound(f"No consumer found with id {consumer_id}", error="Consumer not found")
    return row


async def list_consumers(
    conn: AsyncConnection,
    *,
    principal: Principal,
    dealer_id: int | None,
    kyc_status: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    if principal.role == "dealer":
        dealer_id = principal.dealer_id
    elif principal.role != "admin":
        raise _forbidden()
    rows = await queries.list_consumers(
        conn, dealer_id=dealer_id, kyc_status=kyc_status, limit=limit, offset=offset
    )
    return [consumer_body(r, principal) for r in rows]


def _encrypt(settings: Settings, value: str | None) -> bytes | None:
    return None if value is None else cipher(settings).encrypt(value.encode())


async def create_consumer(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, body: ConsumerCreate
) -> dict[str, Any]:
    """Create the consumer and, when the phone is free, a consumer login for them."""
    if principal.role == "dealer":
        if body.dealer_id not in (None, principal.dealer_id):
            raise Forbidden("A dealer creates consumers only for itself")
        dealer_id = principal.dealer_id
    elif principal.role == "admin":
        if body.dealer_id is None:
            raise BadRequest(
                [{"field": "dealer_id", "message": "required for an admin"}],
                error="Invalid fields: dealer_id",
            )
        dealer_id = body.dealer_id
    else:
        raise _forbidden()
    assert dealer_id is not None
    async with conn.transaction():
        cur = await conn.execute("SELECT 1 FROM dealers WHERE id = %s", (dealer_id,))
        if await cur.fetchone() is None:
            raise NotFound(f"No dealer with id {dealer_id}", error="Dealer not found")
        row = await queries.insert_consumer(
            conn,
            dealer_id=dealer_id,
            name=body.name,
            phone=body.phone,
            pan=body.pan,
            aadhaar_enc=_encrypt(settings, body.aadhar),
            aadhaar_last4=None if body.aadhar is None else body.aadhar[-4:],
        )
        if row is None:
            raise Conflict(
                f"This dealer already has a consumer with phone {body.phone}", error="Consumer already exists"
            )
        login = await auth_queries.insert_user(
            conn, phone=body.phone, name=body.name, role="consumer", dealer_id=None, consumer_id=row["id"]
        )
    log.info(
        "consumer created",
        extra={"consumer_id": row["id"], "dealer_id": dealer_id, "login": login is not None},
    )
    return consumer_body(row, principal)


async def update_kyc(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, consumer_id: int, body: KycUpdate
) -> dict[str, Any]:
    async with conn.transaction():
        current = await visible_consumer(conn, principal=principal, consumer_id=consumer_id, write=True)
        if body.kyc_status == "verified":
            missing = [
                name
                for name, present in (
                    ("pan", body.pan or current["pan"]),
                    ("aadhar", body.aadhar or current["aadhaar_last4"]),
                )
                if not present
            ]
            if missing:
                raise BadRequest(
                    [{"field": m, "message": "required to verify KYC"} for m in missing],
                    error=f"Invalid fields: {', '.join(missing)}",
                )
        row = await queries.update_kyc(
            conn,
            consumer_id,
            kyc_status=body.kyc_status,
            pan=body.pan,
            aadhaar_enc=_encrypt(settings, body.aadhar),
            aadhaar_last4=None if body.aadhar is None else body.aadhar[-4:],
        )
    log.info("kyc updated", extra={"consumer_id": consumer_id, "kyc_status": body.kyc_status})
    return consumer_body(row, principal)


async def consumer_finance(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, consumer_id: int
) -> dict[str, Any]:
    """The consumer's finance applications and the EMI schedules of their loans (api/finance)."""
    await visible_consumer(conn, principal=principal, consumer_id=consumer_id)
    return await finance_service.consumer_finance(conn, settings=settings, consumer_id=consumer_id)


async def consumer_profile(
    conn: AsyncConnection, *, principal: Principal, consumer_id: int
) -> dict[str, Any]:
    """The consumer, their batteries and service tickets, and a summary of both."""
    row = await visible_consumer(conn, principal=principal, consumer_id=consumer_id)
    batteries = await queries.consumer_batteries(conn, consumer_id)
    ids = [b["id"] for b in batteries]
    counts = await service_queries.ticket_counts_by_battery(conn, ids)
    recent_tickets = [
        {**t, "created_at": t["created_at"].isoformat().replace("+00:00", "Z")}
        for t in await service_queries.recent_consumer_tickets(conn, ids, RECENT_TICKETS)
    ]
    battery_bodies = [
        {
            "id": b["id"],
            "serial_number": b["serial_number"],
            "status": b["status"],
            "health_score": _number(b["health_score"]),
            "service_tickets_count": counts.get(b["id"], {}).get("total", 0),
            "active_tickets_count": counts.get(b["id"], {}).get("active", 0),
        }
        for b in batteries
    ]
    return {
        "consumer": consumer_body(row, principal),
        "batteries": battery_bodies,
        "recent_tickets": recent_tickets,
        "summary": {
            "total_batteries": len(batteries),
            "active_batteries": sum(1 for b in batteries if b["status"] == "active"),
            "total_service_tickets": sum(b["service_tickets_count"] for b in battery_bodies),
            "active_service_tickets": sum(b["active_tickets_count"] for b in battery_bodies),
        },
    }


def _number(value: Any) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


# --- documents ------------------------------------------------------------------------------------


def _check_document(kind: str, number: str | None) -> tuple[str, str | None]:
    try:
        kind = normalise_document_type(kind)
    except ValueError as exc:
        raise BadRequest(
            [{"field": "document_type", "message": str(exc)}], error="Invalid fields: document_type"
        ) from None
    try:
        return kind, normalise_document_number(kind, number)
    except ValueError as exc:
        raise BadRequest(
            [{"field": "document_number", "message": str(exc)}], error="Invalid fields: document_number"
        ) from None


def _document(settings: Settings, row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    enc = row["document_number_enc"]
    number = None if enc is None else cipher(settings).decrypt(bytes(enc)).decode()
    return document_body(row, number=number, principal=principal)


async def upload_document(
    conn: AsyncConnection,
    *,
    principal: Principal,
    settings: Settings,
    consumer_id: int,
    document_type: str,
    document_number: str | None,
    data: bytes,
    declared_type: str | None,
    filename: str | None,
) -> dict[str, Any]:
    """Keep an uploaded file (checked by its content, not its name) as a document of the consumer."""
    await visible_consumer(conn, principal=principal, consumer_id=consumer_id)
    kind, number = _check_document(document_type, document_number)
    if not data:
        raise BadRequest([{"field": "file", "message": "is empty"}], error="Invalid fields: file")
    real_type = storage.sniff(data)
    if real_type is None:
        raise UnsupportedMedia(f"Upload a {', '.join(storage.ALLOWED_TYPES)} file")
    if declared_type in storage.ALLOWED_TYPES and declared_type != real_type:
        raise UnsupportedMedia(f"The file is {real_type}, not {declared_type}")
    digest = await asyncio.to_thread(storage.store, Path(settings.documents_dir), data)
    async with conn.transaction():
        row = await queries.insert_document(
            conn,
            consumer_id=consumer_id,
            document_type=kind,
            number_enc=_encrypt(settings, number),
            document_url=None,
            sha256=digest,
            content_type=real_type,
            size_bytes=len(data),
            original_name=(filename or "")[:200] or None,
            uploaded_by=principal.actor,
        )
    log.info(
        "document stored", extra={"consumer_id": consumer_id, "document_id": row["id"], "bytes": len(data)}
    )
    return {"message": "Document uploaded successfully", "document": _document(settings, row, principal)}


async def link_document(
    conn: AsyncConnection,
    *,
    principal: Principal,
    settings: Settings,
    consumer_id: int,
    document_type: str,
    document_url: str,
    document_number: str | None,
) -> dict[str, Any]:
    """Record a document kept elsewhere (the spec's JSON variant)."""
    await visible_consumer(conn, principal=principal, consumer_id=consumer_id)
    kind, number = _check_document(document_type, document_number)
    async with conn.transaction():
        row = await queries.insert_document(
            conn,
            consumer_id=consumer_id,
            document_type=kind,
            number_enc=_encrypt(settings, number),
            document_url=document_url,
            sha256=None,
            content_type=None,
            size_bytes=None,
            original_name=None,
            uploaded_by=principal.actor,
        )
    return {"message": "Document uploaded successfully", "document": _document(settings, row, principal)}


async def list_documents(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, consumer_id: int
) -> list[dict[str, Any]]:
    await visible_consumer(conn, principal=principal, consumer_id=consumer_id)
    return [_document(settings, r, principal) for r in await queries.list_documents(conn, consumer_id)]


async def document_file(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, consumer_id: int, document_id: int
) -> tuple[Path, dict[str, Any]]:
    """Where the document's bytes are, and its row (404 for a link or a missing file)."""
    await visible_consumer(conn, principal=principal, consumer_id=consumer_id)
    row = await queries.get_document(conn, consumer_id, document_id)
    if row is None:
        raise NotFound(f"No document {document_id} for consumer {consumer_id}", error="Document not found")
    if row["sha256"] is None:
        raise NotFound(
            "This document is a link; fetch it from its document_url", error="Document has no file"
        )
    path = storage.path_for(Path(settings.documents_dir), row["sha256"])
    if not path.is_file():
        log.error("document file missing", extra={"document_id": document_id, "sha256": row["sha256"]})
        raise NotFound("The document's file is missing from storage", error="Document not found")
    return path, row
