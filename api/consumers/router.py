"""Consumer endpoints (spec: ienerzy-bms-api.md, "Consumer Management")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from api.consumers import service, storage
from api.consumers.models import (
    DOCUMENT_TYPES,
    Consumer,
    ConsumerCreate,
    ConsumerFinance,
    ConsumerProfile,
    Document,
    DocumentLink,
    DocumentUploaded,
    KycStatus,
    KycUpdate,
)
from api.deps import ConnDep, CurrentUser, SettingsDep
from api.errors import BadRequest, error_responses, parse_json, validation_error
from api.guard import read_form, too_large
from api.openapi import schema_ref
from api.ratelimit import limit_upload
from api.shapes import MAX_ID, Blank, Id, Offset
from api.tags import Tag

router = APIRouter(
    prefix="/api/consumers", tags=[Tag.CONSUMER_MANAGEMENT], responses=error_responses(401, 403, 429)
)

ConsumerId = Annotated[int, Path(ge=1, le=MAX_ID, description="the consumer's id")]

_DOCUMENT_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "PDF, JPEG or PNG, at most PACKFLEET_API_MAX_DOCUMENT_BYTES",
                        },
                        "document_type": {
                            "type": "string",
                            "enum": list(DOCUMENT_TYPES),
                            "example": "pan_card",
                        },
                        # The JSON body's if/then per type is left out here: schemathesis (4.32)
                        # cannot judge it beside a binary part and fails to collect.
                        "document_number": {
                            "type": "string",
                            "maxLength": 64,
                            "example": "ABCDE1234F",
                            "description": "a PAN for pan_card, an Aadhaar number for aadhaar_card",
                        },
                    },
                    "required": ["file", "document_type"],
                    "additionalProperties": False,
                }
            },
            "application/json": {"schema": schema_ref(DocumentLink)},
        },
    }
}


_ONE = error_responses(400, 404)


@router.get("", response_model=list[Consumer], summary="List consumers", responses=error_responses(400))
async def list_consumers(
    conn: ConnDep,
    principal: CurrentUser,
    dealer_id: Annotated[Id | None, Blank, Query(description="admin only")] = None,
    kyc_status: Annotated[KycStatus | None, Blank, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[Offset, Query()] = 0,
) -> list[dict[str, Any]]:
    """The consumers of the caller's dealership (an admin's: all, or one dealer's)."""
    return await service.list_consumers(
        conn, principal=principal, dealer_id=dealer_id, kyc_status=kyc_status, limit=limit, offset=offset
    )


@router.post(
    "",
    status_code=201,
    response_model=Consumer,
    summary="Create consumer",
    responses=error_responses(400, 404, 409, 413),  # 404: no such dealer
)
async def create_consumer(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, body: ConsumerCreate
) -> dict[str, Any]:
    """Create a consumer of the caller's dealership (PAN and Aadhaar checked; Aadhaar encrypted)."""
    return await service.create_consumer(conn, principal=principal, settings=settings, body=body)


@router.put(
    "/{consumer_id}/kyc",
    response_model=Consumer,
    summary="Update KYC status",
    responses=error_responses(400, 404, 413),
)
async def update_kyc(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, consumer_id: ConsumerId, body: KycUpdate
) -> dict[str, Any]:
    """Set the KYC status; PAN and Aadhaar given here replace those on file."""
    return await service.update_kyc(
        conn, principal=principal, settings=settings, consumer_id=consumer_id, body=body
    )


@router.get(
    "/{consumer_id}/finance",
    response_model=ConsumerFinance,
    summary="Get consumer finance details",
    responses=_ONE,
)
async def consumer_finance(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, consumer_id: ConsumerId
) -> dict[str, Any]:
    """The consumer's finance applications and EMI schedule."""
    return await service.consumer_finance(
        conn, principal=principal, settings=settings, consumer_id=consumer_id
    )


@router.get(
    "/{consumer_id}/profile",
    response_model=ConsumerProfile,
    summary="Get complete consumer profile",
    responses=_ONE,
)
async def consumer_profile(conn: ConnDep, principal: CurrentUser, consumer_id: ConsumerId) -> dict[str, Any]:
    """The consumer, their batteries and service tickets, and a summary of both."""
    return await service.consumer_profile(conn, principal=principal, consumer_id=consumer_id)


@router.post(
    "/{consumer_id}/documents",
    status_code=201,
    response_model=DocumentUploaded,
    summary="Upload consumer documents",
    responses=error_responses(400, 404, 413, 415),
    openapi_extra=_DOCUMENT_DOC,
)
async def upload_document(
    request: Request, conn: ConnDep, principal: CurrentUser, settings: SettingsDep, consumer_id: ConsumerId
) -> dict[str, Any]:
    """Upload a file (multipart: `file`, `document_type`, `document_number`) or link one (JSON)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        await limit_upload(request)
        cap = settings.api_max_document_bytes
        form = await read_form(
            request,
            cap=cap,
            what="document",
            fields=("file", "document_type", "document_number"),
            max_files=1,
            max_fields=5,
        )
        try:
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
            data = await upload.read(cap + 1)
        finally:
            await form.close()
        if len(data) > cap:
            raise too_large("document", cap)
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
        link = DocumentLink.model_validate(parse_json(await request.body()))
    except ValidationError as exc:
        raise validation_error(list(exc.errors(include_url=False))) from None
    return await service.link_document(
        conn,
        principal=principal,
        settings=settings,
        consumer_id=consumer_id,
        document_type=link.document_type,
        document_url=link.document_url,
        document_number=link.document_number,
    )


@router.get(
    "/{consumer_id}/documents",
    response_model=list[Document],
    summary="List a consumer's documents",
    responses=_ONE,
)
async def list_documents(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, consumer_id: ConsumerId
) -> list[dict[str, Any]]:
    """The consumer's documents, newest first (numbers masked)."""
    return await service.list_documents(conn, principal=principal, settings=settings, consumer_id=consumer_id)


@router.get(
    "/{consumer_id}/documents/{document_id}/file",
    response_class=FileResponse,
    summary="Download a consumer's document file",
    responses={
        200: {
            "description": "The file, with the content type found when it was stored",
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in storage.ALLOWED_TYPES},
        },
        **_ONE,
    },
)
async def download_document(
    conn: ConnDep,
    principal: CurrentUser,
    settings: SettingsDep,
    consumer_id: ConsumerId,
    document_id: Annotated[int, Path(ge=1, le=MAX_ID)],
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
