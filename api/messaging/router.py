"""Communication Services endpoints (spec: ienerzy-bms-api.md): SMS, OTP and battery-status notices.

Each message is queued in the SMS outbox and sent by its worker (in the scheduler process); the
answer waits up to `wait` seconds (`PACKFLEET_SMS_ANSWER_WAIT_SECONDS` by default) for the
provider, so `status` is `sent` only once the provider accepted the message, `queued` while the
worker is still trying, and `failed` once it gave up.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query

from api.deps import CurrentUser, PoolDep, SettingsDep
from api.errors import error_responses
from api.messaging import service, templates
from api.messaging.models import (
    BatteryStatusDelivery,
    BatteryStatusNotice,
    SendOtp,
    SendSms,
    SmsDelivery,
)
from packfleet.settings import Settings

router = APIRouter(prefix="/api/messaging", tags=["Communication Services"])

ERRORS = error_responses(400, 401, 403, 404, 409, 429)
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="the same key again answers the first message instead of sending another",
    ),
]
Wait = Annotated[
    float | None,
    Query(ge=0, le=10, description="seconds to wait for the provider (default: the server's setting)"),
]


def _wait(settings: Settings, wait: float | None) -> float:
    return settings.sms_answer_wait_seconds if wait is None else wait


@router.post("/send-sms", summary="Send an SMS", response_model=SmsDelivery, responses=ERRORS)
async def send_sms(
    body: SendSms,
    pool: PoolDep,
    principal: CurrentUser,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = None,
) -> dict[str, Any]:
    """Text a phone number: an admin any number, a dealer only its own consumers."""
    row = await service.send_message(
        pool,
        principal=principal,
        to=body.to,
        sms=templates.Sms(templates.GENERAL, body.message),
        idempotency_key=idempotency_key,
        wait_s=_wait(settings, wait),
    )
    return {**service.delivery(row), "to": body.to}


@router.post("/send-otp", summary="Send a one-time code", response_model=SmsDelivery, responses=ERRORS)
async def send_otp(
    body: SendOtp,
    pool: PoolDep,
    principal: CurrentUser,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = None,
) -> dict[str, Any]:
    """Text a verification code (the standard OTP text; its digits are masked in the outbox once sent)."""
    row = await service.send_message(
        pool,
        principal=principal,
        to=body.to,
        sms=templates.otp(body.otp),
        secret=True,
        idempotency_key=idempotency_key,
        wait_s=_wait(settings, wait),
    )
    return {**service.delivery(row), "to": body.to}


@router.post(
    "/battery-status",
    summary="Notify a consumer of a battery's status",
    response_model=BatteryStatusDelivery,
    responses=ERRORS,
)
async def battery_status(
    body: BatteryStatusNotice,
    pool: PoolDep,
    principal: CurrentUser,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = None,
) -> dict[str, Any]:
    """Text a consumer about a battery: a dealer only about its own batteries, to its own consumers."""
    row = await service.send_battery_status(
        pool,
        principal=principal,
        battery_id=body.battery_id,
        to=body.consumer_phone,
        status=body.status,
        text=body.message,
        idempotency_key=idempotency_key,
        wait_s=_wait(settings, wait),
    )
    return {**service.delivery(row), "notification_type": "battery_status"}
