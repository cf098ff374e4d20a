"""Finance endpoints (spec: ienerzy-bms-api.md, "Finance Management"), and loans and payments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.deps import ConnDep, CurrentUser, SettingsDep
from api.errors import error_responses
from api.finance import overdue, payments, reports, service
from api.finance.models import (
    MAX_ID,
    Application,
    ApplicationCreate,
    ApplicationDecision,
    ApplicationStatus,
    AuditEntry,
    AutoDisableRequest,
    AutoDisableResult,
    CollectionReport,
    DisbursementRecord,
    Loan,
    LoanSummary,
    OverdueAccounts,
    Payment,
    PaymentCreate,
    PaymentResult,
    PaymentReversal,
)
from schemas.dates import CalendarDate

router = APIRouter(prefix="/api/finance", tags=["Finance Management"])

ApplicationId = Annotated[int, Path(ge=1, le=MAX_ID)]
LoanId = Annotated[int, Path(ge=1, le=MAX_ID)]
PaymentId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
ConsumerFilter = Annotated[int | None, Query(ge=1, le=MAX_ID, description="only this consumer's")]
READ_ERRORS = error_responses(400, 401, 403, 404, 429)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 429)


@router.post(
    "/applications",
    status_code=201,
    summary="Submit a finance application",
    operation_id="finance_submit_application",  # the nbfc domain has one of the same name
    responses=WRITE_ERRORS,
)
async def submit_application(conn: ConnDep, principal: CurrentUser, body: ApplicationCreate) -> Application:
    """A dealer's (or an admin's) application for one of its consumers and batteries; status `pending`."""
    row = await service.submit_application(conn, principal=principal, body=body)
    return Application.model_validate(row)


@router.get("/applications", summary="List finance applications", responses=READ_ERRORS)
async def list_applications(
    conn: ConnDep,
    principal: CurrentUser,
    status: ApplicationStatus | None = None,
    consumer_id: ConsumerFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Application]:
    """Newest first: a dealer's own, an NBFC's those sent to it, a consumer's their own."""
    rows = await service.list_applications(
        conn, principal=principal, status=status, consumer_id=consumer_id, limit=limit, offset=offset
    )
    return [Application.model_validate(r) for r in rows]


@router.get("/applications/{application_id}", summary="Get a finance application", responses=READ_ERRORS)
async def get_application(
    conn: ConnDep, principal: CurrentUser, application_id: ApplicationId
) -> Application:
    row = await service.get_application(conn, principal=principal, application_id=application_id)
    return Application.model_validate(row)


@router.put(
    "/applications/{application_id}/approve",
    summary="Approve or reject an application",
    responses=WRITE_ERRORS,
)
async def decide_application(
    conn: ConnDep,
    principal: CurrentUser,
    settings: SettingsDep,
    application_id: ApplicationId,
    body: ApplicationDecision,
) -> Application:
    """pending → approved | rejected (admin; an NBFC for the applications sent to it). Approval
    creates the loan and its EMI schedule, due monthly from today; any other change is a 409."""
    row = await service.decide_application(
        conn, principal=principal, settings=settings, application_id=application_id, body=body
    )
    return Application.model_validate(row)


@router.put(
    "/applications/{application_id}/disburse",
    summary="Record the disbursement of an approved loan",
    responses=WRITE_ERRORS,
)
async def disburse(
    conn: ConnDep,
    principal: CurrentUser,
    settings: SettingsDep,
    application_id: ApplicationId,
    body: DisbursementRecord,
) -> Application:
    """approved → disbursed: the EMI due dates move to run monthly from the disbursement date."""
    row = await service.disburse(
        conn,
        principal=principal,
        settings=settings,
        application_id=application_id,
        disbursement_date=body.disbursement_date,
    )
    return Application.model_validate(row)


@router.get("/overdue", summary="Get overdue accounts", responses=READ_ERRORS)
async def overdue_accounts(
    conn: ConnDep,
    principal: CurrentUser,
    settings: SettingsDep,
    min_days: Annotated[int, Query(ge=1, le=3650, description="at least this many days past due")] = 1,
    limit: Limit = 500,
    offset: Offset = 0,
) -> OverdueAccounts:
    """Unpaid instalments past their due date, the oldest first; totals over all of them."""
    found = await reports.overdue_accounts(
        conn, principal=principal, settings=settings, min_days=min_days, limit=limit, offset=offset
    )
    return OverdueAccounts.model_validate(found)


@router.post("/auto-disable", summary="Auto-disable batteries for overdue EMIs", responses=WRITE_ERRORS)
async def auto_disable(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, body: AutoDisableRequest | None = None
) -> AutoDisableResult:
    """Warn, then disable (charging only by default), batteries whose EMIs are overdue beyond the
    threshold, as the daily job does; running it again issues nothing twice."""
    found = await overdue.auto_disable(
        conn,
        principal=principal,
        settings=settings,
        threshold_days=None if body is None else body.overdue_days_threshold,
    )
    return AutoDisableResult.model_validate(found)


@router.get(
    "/collection-report",
    summary="Get the collection report",
    operation_id="finance_collection_report",
    responses=READ_ERRORS,
)
async def collection_report(
    conn: ConnDep,
    principal: CurrentUser,
    settings: SettingsDep,
    start_date: Annotated[
        CalendarDate | None, Query(description="first day (default: 29 days before end_date)")
    ] = None,
    end_date: Annotated[CalendarDate | None, Query(description="last day (default: today)")] = None,
) -> CollectionReport:
    """Recorded payments per day received (reversed ones excluded)."""
    found = await reports.collection_report(
        conn, principal=principal, settings=settings, start=start_date, end=end_date
    )
    return CollectionReport.model_validate(found)


@router.get("/loans", summary="List loans", responses=READ_ERRORS)
async def list_loans(
    conn: ConnDep,
    principal: CurrentUser,
    settings: SettingsDep,
    status: Annotated[str | None, Query(pattern="^(active|closed)$")] = None,
    consumer_id: ConsumerFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[LoanSummary]:
    rows = await service.list_loans(
        conn,
        principal=principal,
        settings=settings,
        status=status,
        consumer_id=consumer_id,
        limit=limit,
        offset=offset,
    )
    return [LoanSummary.model_validate(r) for r in rows]


@router.get("/loans/{loan_id}", summary="Get a loan and its EMI schedule", responses=READ_ERRORS)
async def get_loan(conn: ConnDep, principal: CurrentUser, settings: SettingsDep, loan_id: LoanId) -> Loan:
    """Each instalment with what is paid, outstanding and overdue; the next due date, the
    outstanding principal and the amount that closes the loan today."""
    return Loan.model_validate(
        await service.loan_detail(conn, principal=principal, settings=settings, loan_id=loan_id)
    )


@router.get("/loans/{loan_id}/audit", summary="Get a loan's audit trail", responses=READ_ERRORS)
async def loan_audit(conn: ConnDep, principal: CurrentUser, loan_id: LoanId) -> list[AuditEntry]:
    """Everything done to the loan and its application: decisions, payments, warnings, disables."""
    rows = await service.loan_audit(conn, principal=principal, loan_id=loan_id)
    return [AuditEntry.model_validate(r) for r in rows]


@router.get("/loans/{loan_id}/payments", summary="List a loan's payments", responses=READ_ERRORS)
async def loan_payments(
    conn: ConnDep, principal: CurrentUser, loan_id: LoanId, limit: Limit = 100, offset: Offset = 0
) -> list[Payment]:
    rows = await payments.loan_payments(
        conn, principal=principal, loan_id=loan_id, limit=limit, offset=offset
    )
    return [Payment.model_validate(r) for r in rows]


@router.post(
    "/loans/{loan_id}/payments",
    status_code=201,
    summary="Record a payment",
    responses=WRITE_ERRORS,
)
async def record_payment(
    conn: ConnDep,
    principal: CurrentUser,
    settings: SettingsDep,
    response: Response,
    loan_id: LoanId,
    body: PaymentCreate,
) -> PaymentResult:
    """Allocated to the oldest due instalment first, late fee → interest → principal; what is left
    prepays principal (the EMI stays, the schedule shortens). The same `reference` again answers the
    first payment (`Idempotent-Replayed: true`); with another amount or loan it is a 409. A payment
    that clears the overdue of a battery disabled for it enables the battery at once."""
    found, created = await payments.record_payment(
        conn, principal=principal, settings=settings, loan_id=loan_id, body=body
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return PaymentResult.model_validate(found)


@router.post("/payments/{payment_id}/reverse", summary="Reverse a payment", responses=WRITE_ERRORS)
async def reverse_payment(
    conn: ConnDep, principal: CurrentUser, settings: SettingsDep, payment_id: PaymentId, body: PaymentReversal
) -> PaymentResult:
    """Take back a payment entered in error: what it paid is owed again (a second reversal is a no-op)."""
    found = await payments.reverse_payment(
        conn, principal=principal, settings=settings, payment_id=payment_id, reason=body.reason
    )
    return PaymentResult.model_validate(found)
