"""A simulated lender: takes applications and collection reports over HTTP, decides each application
after a delay, and tells packfleet through its signed webhook (schemas/lender.py is the contract).

It is what `packfleet nbfc-sim` and `packfleet up` run, and what the tests talk to, so the whole
NBFC flow runs locally. It keeps its state in memory: a restart forgets it, like a test double.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from schemas.lender import (
    APPLICATIONS_PATH,
    COLLECTION_REPORTS_PATH,
    EVENT_HEADER,
    LENDER_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ApplicationSubmission,
    CollectionReportSubmission,
    sign,
)

log = logging.getLogger("nbfc_sim")


@dataclass(frozen=True)
class LenderOptions:
    code: str
    secret: str
    webhook_url: str
    api_key: str | None = None  # required as a bearer token when set
    decision_delay_s: float = 5.0
    disburse_after_s: float | None = 2.0  # a "disbursed" event this long after approval (None: never)
    approve_rate: float = 1.0
    max_amount: Decimal = Decimal("1000000")
    unavailable_first: int = 0  # answer 503 to this many calls first (an outage)
    seed: int | None = None
    timezone: str = "Asia/Kolkata"  # whose calendar its dates are in (an Indian lender's)


@dataclass
class Lender:
    """The simulator's state: what it has taken (by idempotency key) and the webhooks it sent."""

    options: LenderOptions
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: int = 0
    webhooks: list[dict[str, Any]] = field(default_factory=list)  # (event, status answered)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.options.seed)


def emi(amount: Decimal, rate: Decimal, months: int) -> Decimal:
    """The lender's own EMI quote (reducing balance, like packfleet's)."""
    r = float(rate) / 1200
    value = (
        float(amount) / months if r == 0 else float(amount) * r * (1 + r) ** months / ((1 + r) ** months - 1)
    )
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def create_lender_app(lender: Lender) -> FastAPI:
    app = FastAPI(title=f"NBFC simulator {lender.options.code}", docs_url=None, redoc_url=None)

    def refused(authorization: str | None) -> JSONResponse | None:
        lender.calls += 1
        if lender.calls <= lender.options.unavailable_first:
            return JSONResponse({"error": "maintenance"}, status_code=503)
        if lender.options.api_key and authorization != f"Bearer {lender.options.api_key}":
            return JSONResponse({"error": "bad credentials"}, status_code=401)
        return None

    @app.post(APPLICATIONS_PATH, status_code=201)
    async def take_application(
        request: Request,
        idempotency_key: str = Header(),
        authorization: str | None = Header(default=None),
    ) -> Any:
        if (answer := refused(authorization)) is not None:
            return answer
        if idempotency_key in lender.applications:  # a retry: the same application, not a new one
            return JSONResponse(lender.applications[idempotency_key]["receipt"], status_code=200)
        submission = ApplicationSubmission.model_validate(await request.json())
        receipt = {"reference": f"APP{uuid.uuid4().hex[:12].upper()}", "status": "received"}
        lender.applications[idempotency_key] = {"submission": submission, "receipt": receipt}
        log.info("application received", extra={"application_id": submission.application_id, **receipt})
        _spawn(lender, _decide(lender, submission))
        return receipt

    @app.post(COLLECTION_REPORTS_PATH, status_code=201)
    async def take_report(
        request: Request,
        idempotency_key: str = Header(),
        authorization: str | None = Header(default=None),
    ) -> Any:
        if (answer := refused(authorization)) is not None:
            return answer
        if idempotency_key in lender.reports:
            return JSONResponse(lender.reports[idempotency_key]["receipt"], status_code=200)
        report = CollectionReportSubmission.model_validate(await request.json())
        receipt = {"reference": f"RPT{uuid.uuid4().hex[:10].upper()}", "status": "submitted"}
        lender.reports[idempotency_key] = {"report": report, "receipt": receipt}
        return receipt

    return app


def _spawn(lender: Lender, work: Any) -> None:
    task = asyncio.get_running_loop().create_task(work)
    lender.tasks.add(task)
    task.add_done_callback(lender.tasks.discard)


async def _decide(lender: Lender, submission: ApplicationSubmission) -> None:
    options = lender.options
    await asyncio.sleep(options.decision_delay_s)
    if submission.amount > options.max_amount or lender.rng.random() >= options.approve_rate:
        await deliver(
            lender,
            {
                "applicationId": submission.application_id,
                "status": "rejected",
                "reason": "not within our credit policy",
            },
        )
        return
    approved = await deliver(
        lender,
        {
            "applicationId": submission.application_id,
            "status": "approved",
            "sanctionedAmount": float(submission.amount),
            "interestRate": float(submission.interest_rate),
            "emiAmount": float(emi(submission.amount, submission.interest_rate, submission.tenure_months)),
        },
    )
    if approved and options.disburse_after_s is not None:
        await asyncio.sleep(options.disburse_after_s)
        await deliver(
            lender,
            {
                "applicationId": submission.application_id,
                "status": "disbursed",
                "disbursementDate": lender_today(options).isoformat(),
            },
        )


def lender_today(options: LenderOptions, now: datetime | None = None) -> date:
    """The lender's date: in its own time zone, not the machine's (from 18:30 UTC an Indian
    lender's today is the machine's tomorrow)."""
    return (now or datetime.now(ZoneInfo("UTC"))).astimezone(ZoneInfo(options.timezone)).date()


async def deliver(lender: Lender, event: dict[str, Any], *, attempts: int = 8) -> bool:
    """Post one event to the webhook until it is answered (re-signed for each attempt, with the same
    event id); True when packfleet took it."""
    body = json.dumps(event).encode()
    event_id = str(uuid.uuid4())
    delay = 1.0  # at least a second: a retry signed in the same second would be the same request
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(attempts):
            stamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                LENDER_HEADER: lender.options.code,
                TIMESTAMP_HEADER: str(stamp),
                SIGNATURE_HEADER: sign(lender.options.secret, stamp, body),
                EVENT_HEADER: event_id,
            }
            try:
                answer = await client.post(lender.options.webhook_url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("webhook not delivered", extra={"error": repr(exc), "event": event})
            else:
                lender.webhooks.append({**event, "event_id": event_id, "answered": answer.status_code})
                if answer.status_code < 500:
                    log.info("webhook delivered", extra={"event": event, "status": answer.status_code})
                    return answer.is_success
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    return False
