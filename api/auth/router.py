"""Authentication endpoints (spec: ienerzy-bms-api.md, "Authentication"): phone + OTP, then a JWT."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request

from api.auth import service
from api.auth.models import LoginRequest, LoginToken, OtpSent, VerifyOtpRequest
from api.deps import ConnDep, SettingsDep
from api.errors import error_responses
from api.ratelimit import limit_auth, rate_limits
from api.tags import Tag

router = APIRouter(
    prefix="/api/auth",
    tags=[Tag.AUTHENTICATION],
    dependencies=[Depends(limit_auth)],
    responses=error_responses(400, 413, 429),
)


async def _limit_phone(request: Request, phone: str) -> None:
    limits_ = rate_limits(request)
    await limits_.hit(limits_.auth, "auth-phone", phone)


@router.post("/login", summary="Start a login: send an OTP by SMS")
async def login(request: Request, body: LoginRequest, conn: ConnDep, settings: SettingsDep) -> OtpSent:
    """Send a login code by SMS (queued with the code, in one transaction). Every phone gets the
    same answer (the spec's example also returns the user; that would tell anyone which phones
    have accounts)."""
    await _limit_phone(request, body.phone)
    await service.start_login(
        conn, secret=settings.require_jwt_secret(), phone=body.phone, user_type=body.user_type
    )
    return OtpSent(success=True, message="OTP sent successfully")


@router.post(
    "/verify-otp",
    response_model=LoginToken,
    summary="Verify the OTP and get a JWT",
    responses=error_responses(401),
)
async def verify_otp(
    request: Request, body: VerifyOtpRequest, conn: ConnDep, settings: SettingsDep
) -> dict[str, Any]:
    """Exchange a valid code for a JWT and the user."""
    await _limit_phone(request, body.phone)
    return await service.verify_code(
        conn,
        secret=settings.require_jwt_secret(),
        phone=body.phone,
        otp=body.otp,
        ttl=timedelta(minutes=settings.jwt_ttl_minutes),
    )
