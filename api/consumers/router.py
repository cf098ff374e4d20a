"""Consumer endpoints (spec: ienerzy-bms-api.md, "Consumer Management")."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from api.consumers import service, storage
from api.consumers.models import ConsumerCreate, DocumentLink, KycUpdate
from api.deps import ConnDep, CurrentUser, SettingsDep
from api.errors import BadRequest, validation_details
from api.ratelimit import limit_upload

router = APIRouter(prefix="/api/consumers", tags=["consumers"])

_DOCUMENT_DOC = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "PDF, JPEG or PNG, at most 5 MiB",
                        },
                        "document_type": {"type": "string", "example": "pan_card"},
                        "document_number": {"type": "string", "example": "ABCDE1234F"},
                    },
                    "required": ["file", "document_type"],
                }
            },
            "application/json": {
                "schema": DocumentLink.model_json_schema(),
            },
        }
    }
}


@router.get("")
async def list_consumers(
    conn: ConnDep,
    principal: CurrentUser,
    dealer_id: int | None = Query(default=None, description="admin only"),
    kyc_status: Literal["pending", "verified", "rejected"] | None = None,
    limit: int = Query(default=100, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    return await service.list_consumers(
        conn, principal=principal, dealer_id=dealer_id, kyc_status=kyc_status, limit=limit, offset=offset
    )


@router.post("", status_code=201)
async def create_consumer(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, body: ConsumerCreate
) -> dict[str, Any]:
    """Create a consumer of the caller's dealership (PAN and Aadhaar checked; Aadhaar encrypted)."""
    return await service.create_consumer(conn, principal=principal, settings=settings, body=body)


@router.put("/{consumer_id}/kyc")
async def update_kyc(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, consumer_id: int, body: KycUpdate
) -> dict[str, Any]:
    return await service.update_kyc(
        conn, principal=principal, settings=settings, consumer_id=consumer_id, body=body
    )


@router.get("/{consumer_id}/finance")
async def consumer_finance(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, consumer_id: int
) -> dict[str, Any]:
    return await service.consumer_finance(
        conn, principal=principal, settings=settings, consumer_id=consumer_id
    )


@router.get("/{consumer_id}/profile")
async def consumer_profile(conn: ConnDep, principal: CurrentUser, consumer_id: int) -> dict[str, Any]:
    return await service.consumer_profile(conn, principal=principal, consumer_id=consumer_id)


@router.post("/{consumer_id}/documents", status_code=201, openapi_extra=_DOCUMENT_DOC)
async def upload_document(
    request: Request, conn: ConnDep, principal: CurrentUser, settings: SettingsDep, consumer_id: int
) -> dict[str, Any]:
    """Upload a file (multipart: `file`, `document_type`, `document_number`) or link one (JSON)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        await limit_upload(request)
        declared_length = int(request.headers.get("content-length") or 0)
        if declared_length > storage.MAX_DOCUMENT_BYTES + 64 * 1024:
            raise service.PayloadTooLarge(f"Documents are at most {storage.MAX_DOCUMENT_BYTES // 2**20} MiB")
        form = await request.form(max_files=1, max_fields=5)
        upload = form.get("file")
        kind = form.get("document_type")
        number = form.get("document_number")
        if not isinstance(upload, UploadFile) or not isinstance(kind, str):
            raise BadRequest(
                [
                    {"field": "file", "message": "a file is required"},
                    {"field": "document_type", "message": "required"},
                ],
                error="Invalid fields: file, document_type",
            )
        data = await upload.read(storage.MAX_DOCUMENT_BYTES + 1)
        declared = (upload.content_type or "").split(";")[0].strip() or None
        return await service.upload_document(
            conn,
            principal=principal,
            settings=settings,
            consumer_id=consumer_id,
            document_type=kind,
            document_number=number if isinstance(number, str) else None,
            data=data,
            declared_type=declared,
            filename=upload.filename,
        )
    try:
        link = DocumentLink.model_validate(json.loads(await request.body()))
    except ValueError as exc:
        details = (
            validation_details([dict(e) for e in exc.errors()])
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise BadRequest(
            details, error="Invalid document: send multipart with a file, or JSON with document_url"
        ) from None
    return await service.link_document(
        conn,
        principal=principal,
        settings=settings,
        consumer_id=consumer_id,
        document_type=link.document_type,
        document_url=link.document_url,
        document_number=link.document_number,
    )


@router.get("/{consumer_id}/documents")
async def list_documents(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, consumer_id: int
) -> list[dict[str, Any]]:
    return await service.list_documents(conn, principal=principal, settings=settings, consumer_id=consumer_id)


@router.get("/{consumer_id}/documents/{document_id}/file", response_class=FileResponse)
async def download_document(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, consumer_id: int, document_id: int
) -> FileResponse:
    """The uploaded file, with the content type found when it was stored."""
    path, row = await service.document_file(
        conn, principal=principal, settings=settings, consumer_id=consumer_id, document_id=document_id
    )
    name = f"{row['document_type']}-{row['id']}.{storage.EXTENSIONS.get(row['content_type'], 'bin')}"
    return FileResponse(
        path,
        media_type=row["content_type"],
        filename=name,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"},
    )
