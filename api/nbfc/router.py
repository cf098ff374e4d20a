"""NBFC endpoints (spec: ienerzy-bms-api.md, "NBFC Integration")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.deps import ConnDep, CurrentUser, PoolDep, SettingsDep
from api.errors import error_responses
from api.nbfc import service
from api.nbfc.models import (
    CollectionReportResult,
    CollectionReportSubmit,
    NbfcApplicationCreate,
    Portfolio,
    SubmitResult,
    WebhookResult,
)
from schemas.lender import EVENT_HEADER, LENDER_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookEvent

router = APIRouter(prefix="/api/nbfc", tags=["NBFC Integration"])

MAX_WEBHOOK_BYTES = 64 * 1024
_WEBHOOK_DOC = {
    "security": [],
    "parameters": [
        {
            "name": name,
            "in": "header",
            "required": required,
            "schema": {"type": "string"},
            "description": text,
        }
        for name, required, text in (
            (LENDER_HEADER, True, "the NBFC's code"),
            (TIMESTAMP_HEADER, True, "Unix seconds; at most 5 minutes from our clock"),
            (
                SIGNATURE_HEADER,
                True,
                "sha256=<hex HMAC-SHA256 of '<timestamp>.' + raw body, the NBFC's secret>",
            ),
            (EVENT_HEADER, False, "the same on every delivery of one event (default: the body's SHA-256)"),
        )
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": WebhookEvent.model_json_schema()}},
    },
}


@router.post(
    "/submit-application",
    summary="Submit an application to an NBFC",
    operation_id="nbfc_submit_application",  # the finance domain has one of the same name
    responses=error_responses(400, 401, 403, 404, 409, 429),
)
async def submit_application(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, body: NbfcApplicationCreate
) -> SubmitResult:
    """Record the application (status `submitted`) and deliver it to the lender through the outbox:
    a lender outage loses nothing, and a retry is the same application at the lender."""
    found = await service.submit_application(conn, principal=principal, settings=settings, body=body)
    return SubmitResult.model_validate(found)


@router.post(
    "/webhook-status",
    summary="Handle an NBFC webhook",
    responses=error_responses(400, 401, 404, 409, 413),
    openapi_extra=_WEBHOOK_DOC,
)
async def webhook_status(request: Request, conn: ConnDep, settings: SettingsDep) -> WebhookResult:
    """A lender's decision, authenticated by its HMAC signature (not a JWT): approved (sanctioned)
    creates the loan and its schedule; the same event twice is processed once."""
    declared = int(request.headers.get("content-length") or 0)
    body = b"" if declared > MAX_WEBHOOK_BYTES else await request.body()
    if declared > MAX_WEBHOOK_BYTES or len(body) > MAX_WEBHOOK_BYTES:
        return JSONResponse(  # type: ignore[return-value]
            {
                "error": "Payload too large",
                "details": f"at most {MAX_WEBHOOK_BYTES} bytes",
                "code": "PAYLOAD_TOO_LARGE",
            },
            status_code=413,
        )
    status, answer = await service.handle_webhook(
        conn, settings=settings, headers={k.lower(): v for k, v in request.headers.items()}, body=body
    )
    if status != 200:
        return JSONResponse(answer, status_code=status)  # type: ignore[return-value]
    return WebhookResult.model_validate(answer)


@router.get("/portfolio", summary="Get the NBFC portfolio", responses=error_responses(401, 403, 429))
async def portfolio(conn: ConnDep, principal: CurrentUser, settings: SettingsDep) -> Portfolio:
    """An NBFC's applications and what was disbursed (a dealer: the ones it sent; admin: all)."""
    return Portfolio.model_validate(await service.portfolio(conn, principal=principal, settings=settings))


@router.post(
    "/collection-report",
    summary="Submit a collection report to an NBFC",
    operation_id="nbfc_collection_report",
    responses=error_responses(400, 401, 403, 404, 409, 429),
)
async def collection_report(
    pool: PoolDep,
    principal: CurrentUser,
    settings: SettingsDep,
    body: CollectionReportSubmit,
    wait: Annotated[float, Query(ge=0, le=30, description="seconds to wait for the NBFC's answer")] = 5.0,
) -> CollectionReportResult:
    """The day's collections, computed from the recorded payments, sent to the NBFC through the
    outbox (once per dealer, NBFC and day: sending it again answers the first report)."""
    found = await service.submit_collection_report(
        pool, principal=principal, settings=settings, body=body, wait_s=wait
    )
    return CollectionReportResult.model_validate(found)
