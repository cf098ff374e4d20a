"""NBFC use cases: submit an application to a lender, its webhooks, the portfolio, collection reports.

Calls to a lender go through `nbfc_outbox` (written in the business transaction, delivered by the
outbox worker in the scheduler process, api/nbfc/jobs.py), so a lender outage loses nothing and its
Idempotency-Key makes a retry the same call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from api.auth.tokens import Principal
from api.consumers import queries as consumer_queries
from api.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, Unauthorized, validation_details
from api.finance import queries as finance_queries
from api.finance import service as finance
from api.finance.access import Scope, scope_for
from api.finance.loans import business_today
from api.finance.models import ApplicationCreate, json_number
from api.finance.reports import report_between
from api.finance.schedule import add_months, emi
from api.nbfc import queries
from api.nbfc.models import CollectionReportSubmit, NbfcApplicationCreate
from packfleet.outbox import OPEN, notify_workers
from packfleet.settings import Settings
from schemas.lender import (
    APPLICATIONS_PATH,
    COLLECTION_REPORTS_PATH,
    EVENT_HEADER,
    LENDER_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ApplicationSubmission,
    BadSignature,
    CollectionReportSubmission,
    WebhookEvent,
    verify,
)

log = logging.getLogger(__name__)

Row = dict[str, Any]
POLL_S = 0.05
MAX_EVENT_KEY = 200


class LenderNotConfigured(Conflict):
    code = "LENDER_NOT_CONFIGURED"


async def choose_lender(conn: AsyncConnection, nbfc_id: int | None) -> Row:
    """The lender asked for, or the only one there is."""
    if nbfc_id is not None:
        lender = await queries.lender_by_id(conn, nbfc_id)
        if lender is None:
            raise NotFound(f"No active NBFC with id {nbfc_id}", error="NBFC not found")
        return lender
    lenders = await queries.active_lenders(conn)
    if len(lenders) != 1:
        raise BadRequest(
            [{"field": "nbfc_id", "message": "required: there is more than one NBFC, or none"}],
            error="Invalid fields: nbfc_id",
        )
    return lenders[0]


def _api_url(lender: Row, settings: Settings, path: str) -> str:
    base = lender["api_base_url"] or settings.nbfc_api_url
    if not base:
        raise LenderNotConfigured(
            f"NBFC {lender['code']} has no API address (set PACKFLEET_NBFC_API_URL or the lender's URL)",
            error="NBFC not reachable",
        )
    return base.rstrip("/") + path


# --- submit -------------------------------------------------------------------------------------


async def submit_application(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, body: NbfcApplicationCreate
) -> Row:
    """Record the application (status `submitted`) and its call to the lender, in one transaction."""
    async with conn.transaction():
        lender = await choose_lender(conn, body.nbfc_id)
        _api_url(lender, settings, APPLICATIONS_PATH)  # refused now if no address is configured at all
        application = await finance.create_application(
            conn,
            principal=principal,
            body=ApplicationCreate.model_validate(body.model_dump(exclude={"nbfc_id"})),
            status="submitted",
            nbfc_id=lender["id"],
        )
        consumer = await consumer_queries.get_consumer(conn, application["consumer_id"])
        assert consumer is not None
        submission = ApplicationSubmission(
            application_id=application["id"],
            dealer_id=application["dealer_id"],
            consumer_name=consumer["name"],
            consumer_phone=consumer["phone"],
            battery_serial=application["battery_serial"],
            amount=application["amount"],
            tenure_months=application["tenure_months"],
            interest_rate=application["interest_rate"],
        )
        await queries.queue_call(
            conn,
            lender_id=lender["id"],
            kind="application",
            idempotency_key=f"packfleet-application-{application['id']}",
            payload={"path": APPLICATIONS_PATH, "body": submission.model_dump(mode="json")},
            application_id=application["id"],
        )
        await notify_workers(conn, queries.OUTBOX)
    log.info(
        "application submitted to nbfc", extra={"application_id": application["id"], "nbfc": lender["code"]}
    )
    return {
        "success": True,
        "application": {**application, "delivery": "queued"},
        "message": "Application submitted to NBFC successfully",
    }


# --- webhook ------------------------------------------------------------------------------------


async def handle_webhook(
    conn: AsyncConnection, *, settings: Settings, headers: dict[str, str], body: bytes
) -> tuple[int, Row]:
    """Authenticate a lender's webhook and apply it once; return the HTTP status and the answer.

    Unsigned, badly signed, stale or replayed calls are 401 and change nothing. The same event
    (by `X-NBFC-Event-Id`, else the body's hash) is answered as the first time, whatever it was.
    """
    code = headers.get(LENDER_HEADER.lower(), "")
    lender = await queries.lender_by_code(conn, code) if code else None
    if lender is None:
        log.warning("nbfc webhook refused", extra={"reason": "unknown lender", "nbfc": code[:40]})
        raise Unauthorized("Unknown NBFC", error="Webhook not authenticated", code="WEBHOOK_UNAUTHORIZED")
    signature = headers.get(SIGNATURE_HEADER.lower())
    try:
        verify(
            lender["webhook_secret"],
            timestamp=headers.get(TIMESTAMP_HEADER.lower()),
            signature=signature,
            body=body,
            now=time.time(),
            tolerance_s=settings.nbfc_webhook_tolerance_s,
        )
    except BadSignature as exc:
        log.warning("nbfc webhook refused", extra={"reason": str(exc), "nbfc": lender["code"]})
        raise Unauthorized(str(exc), error="Webhook not authenticated", code="WEBHOOK_UNAUTHORIZED") from None
    assert signature is not None
    try:
        event = WebhookEvent.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(
            validation_details([dict(e) for e in exc.errors()]), error="Invalid webhook body"
        ) from None
    event_key = headers.get(EVENT_HEADER.lower()) or hashlib.sha256(body).hexdigest()
    if len(event_key) > MAX_EVENT_KEY:
        raise BadRequest(f"{EVENT_HEADER} is at most {MAX_EVENT_KEY} characters", error="Invalid webhook")
    async with conn.transaction():
        if not await queries.remember_signature(conn, lender_id=lender["id"], signature=signature.strip()):
            log.warning("nbfc webhook refused", extra={"reason": "replayed", "nbfc": lender["code"]})
            raise Unauthorized("replayed", error="Webhook not authenticated", code="WEBHOOK_UNAUTHORIZED")
        # One delivery of an event at a time: a second one waits here, then finds the first's answer.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"nbfc-event:{lender['id']}:{event_key}",),
        )
        seen = await queries.event(conn, lender_id=lender["id"], event_key=event_key)
        if seen is not None:
            return seen["http_status"], seen["response"]
        try:
            async with conn.transaction():
                answer = await _apply(conn, lender=lender, event=event, settings=settings)
            status, outcome = 200, "processed"
        except ApiError as exc:
            status, outcome, answer = exc.status, "rejected", exc.body()
            log.warning(
                "nbfc webhook rejected",
                extra={
                    "nbfc": lender["code"],
                    "application_id": event.applicationId,
                    "error": exc.error,
                    "details": str(exc.details),
                    "status": event.status,
                },
            )
        await queries.insert_event(
            conn,
            lender_id=lender["id"],
            event_key=event_key,
            application_id=event.applicationId,
            status=event.status,
            outcome=outcome,
            http_status=status,
            response=answer,
            body=json.loads(body),
        )
    return status, answer


async def _apply(conn: AsyncConnection, *, lender: Row, event: WebhookEvent, settings: Settings) -> Row:
    application = await finance_queries.get_application(conn, event.applicationId, lock=True)
    if application is None or application["nbfc_id"] != lender["id"]:
        raise NotFound(
            f"No application {event.applicationId} was sent to this NBFC", error="Application not found"
        )
    actor = f"nbfc:{lender['code']}"
    wanted = "approved" if event.status == "sanctioned" else event.status
    finance.check_transition(application["status"], wanted)
    today = business_today(settings)
    detail: Row = {
        "status": event.status,
        "lender_emi": None if event.emiAmount is None else str(event.emiAmount),
    }
    if wanted == "approved":
        amount = event.sanctionedAmount or application["amount"]
        rate = application["interest_rate"] if event.interestRate is None else event.interestRate
        tenure = event.tenureMonths or application["tenure_months"]
        await finance.approve(
            conn,
            application=application,
            amount=amount,
            interest_rate=rate,
            tenure_months=tenure,
            note=event.reason,
            actor=actor,
            today=today,
            disbursement_date=event.disbursementDate,
        )
        ours = emi(amount, rate, tenure)
        if event.emiAmount is not None and abs(event.emiAmount - ours) > Decimal("0.01"):
            # Our schedule is reducing balance; a lender quoting another method is noted, not followed.
            detail["emi_differs"] = {"ours": str(ours), "lender": str(event.emiAmount)}
            log.warning("nbfc emi differs from ours", extra={"application_id": application["id"], **detail})
    elif wanted == "disbursed":
        await finance.record_disbursement(
            conn,
            application=application,
            disbursement_date=event.disbursementDate or today,
            actor=actor,
            settings=settings,
        )
    elif wanted == "rejected":
        await finance.reject(conn, application=application, note=event.reason, actor=actor)
    else:
        await finance_queries.set_application_status(conn, application["id"], status=wanted)
    await finance_queries.audit(
        conn, actor=actor, action="nbfc_webhook_applied", application_id=application["id"], detail=detail
    )
    row = await finance_queries.get_application(conn, application["id"])
    assert row is not None
    loan = await finance_queries.loan_of_application(conn, application["id"])
    return {
        "success": True,
        "message": "Webhook processed successfully",
        "application": {
            "id": row["id"],
            "status": row["status"],
            "sanctioned_amount": None
            if row["approved_amount"] is None
            else json_number(row["approved_amount"]),
            "interest_rate": json_number(row["interest_rate"]),
            "emi_amount": None if loan is None else json_number(loan["emi"]),
            "loan_id": row["loan_id"],
        },
    }


# --- portfolio ----------------------------------------------------------------------------------


async def portfolio(conn: AsyncConnection, *, principal: Principal, settings: Settings) -> Row:
    """The applications sent to NBFCs in scope (an NBFC: its own; a dealer: its own; admin: all)."""
    scope = await scope_for(conn, principal, "admin", "dealer", "nbfc")
    summary = await queries.portfolio_summary(conn, scope=scope)
    today = business_today(settings)
    since = add_months(today.replace(day=1), -11)
    trend = await queries.monthly_trend(conn, scope=scope, since=since, timezone=settings.finance_timezone)
    total = summary["total_applications"]

    def rate(n: int) -> str:
        return f"{Decimal(100 * n) / total:.1f}" if total else "0.0"

    return {
        "portfolio_summary": summary,
        "monthly_trend": trend,
        "portfolio_health": {
            "approval_rate": rate(summary["approved_count"]),
            "disbursement_rate": rate(summary["disbursed_count"]),
        },
    }


# --- collection reports -------------------------------------------------------------------------


async def submit_collection_report(
    pool: AsyncConnectionPool,
    *,
    principal: Principal,
    settings: Settings,
    body: CollectionReportSubmit,
    wait_s: float,
) -> Row:
    """A dealer's collections of a day for a lender, computed from the recorded payments, sent
    through the outbox (once per dealer, lender and day); waits up to `wait_s` for its answer."""
    async with pool.connection() as conn:
        await scope_for(conn, principal, "admin", "dealer")
        dealer_id = _reported_dealer(principal, body)
        if body.report_date > business_today(settings):
            raise BadRequest(
                [{"field": "report_date", "message": "is in the future"}], error="Invalid fields: report_date"
            )
        async with conn.transaction():
            lender = await choose_lender(conn, body.nbfc_id)
            _api_url(lender, settings, COLLECTION_REPORTS_PATH)
            scope = Scope(dealer_id=dealer_id, nbfc_id=lender["id"])
            day = await report_between(conn, scope=scope, start=body.report_date, end=body.report_date)
            data = {
                "total_collections": day["summary"]["total_collections"],
                "amount_collected": day["summary"]["total_amount_collected"],
                "overdue_count": await queries.overdue_count(
                    conn, scope=scope, on=body.report_date, timezone=settings.finance_timezone
                ),
            }
            if body.collection_data is not None and body.collection_data.model_dump() != data:
                raise Conflict(
                    {"computed": _data_json(data)},
                    error="collection_data does not match the recorded payments",
                    code="COLLECTION_DATA_MISMATCH",
                )
            stored = {**data, "amount_collected": json_number(data["amount_collected"])}
            report = await queries.insert_report(
                conn,
                dealer_id=dealer_id,
                lender_id=lender["id"],
                report_date=body.report_date,
                collection_data=stored,
                created_by=principal.actor,
            )
            if report is None:  # already reported: the same report, not a second call
                report = await queries.report(
                    conn, dealer_id=dealer_id, lender_id=lender["id"], report_date=body.report_date
                )
                assert report is not None
            else:
                submission = CollectionReportSubmission(
                    report_id=report["id"], dealer_id=dealer_id, report_date=body.report_date, **data
                )
                await queries.queue_call(
                    conn,
                    lender_id=lender["id"],
                    kind="collection_report",
                    idempotency_key=f"packfleet-collection-report-{report['id']}",
                    payload={"path": COLLECTION_REPORTS_PATH, "body": submission.model_dump(mode="json")},
                    report_id=report["id"],
                )
                await notify_workers(conn, queries.OUTBOX)
    call = await _delivery(pool, report["id"], wait_s)
    answer = _lender_answer(call)
    return {
        "success": answer["status"] != "failed",
        "message": "Collection report submitted successfully"
        if answer["status"] == "submitted"
        else "Collection report queued for the NBFC"
        if answer["status"] == "queued"
        else "The NBFC did not take the collection report",
        "report": {
            **report,
            "collection_data": _data_json(report["collection_data"]),
            "nbfc_response": json.dumps(answer, separators=(",", ":"))
            if answer["status"] == "submitted"
            else None,
        },
        "nbfc_response": answer,
    }


def _reported_dealer(principal: Principal, body: CollectionReportSubmit) -> int:
    if principal.role == "dealer":
        if body.dealer_id not in (None, principal.dealer_id):
            raise Forbidden("A dealer reports only its own collections")
        assert principal.dealer_id is not None
        return principal.dealer_id
    if body.dealer_id is None:
        raise BadRequest(
            [{"field": "dealer_id", "message": "required for an admin"}], error="Invalid fields: dealer_id"
        )
    return body.dealer_id


def _data_json(data: Row) -> str:
    """The figures as the spec writes them: compact JSON, the amount with two decimals."""
    amount = Decimal(str(data["amount_collected"]))
    return (
        f'{{"total_collections":{data["total_collections"]},"amount_collected":{amount:.2f},'
        f'"overdue_count":{data["overdue_count"]}}}'
    )


async def _delivery(pool: AsyncConnectionPool, report_id: int, wait_s: float) -> Row:
    """The report's outbox row once delivered or given up, or as it is after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        async with pool.connection() as conn:
            call = await queries.call_of(conn, report_id=report_id)
        assert call is not None
        if call["status"] not in OPEN or time.monotonic() >= deadline:
            return call
        await asyncio.sleep(POLL_S)


def _lender_answer(call: Row) -> Row:
    if call["status"] == "sent":
        return {
            "success": True,
            "report_id": call["provider_message_id"],
            "status": "submitted",
            "message": "Collection report submitted successfully to NBFC",
        }
    if call["status"] == "failed":
        return {"success": False, "report_id": None, "status": "failed", "message": call["error"] or "failed"}
    return {
        "success": True,
        "report_id": None,
        "status": "queued",
        "message": f"Queued for the NBFC ({call['attempts']} attempts so far)",
    }
