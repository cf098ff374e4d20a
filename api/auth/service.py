"""Phone login: send a one-time password, verify it, hand out a JWT.

Codes are six digits from `secrets`, stored only as an HMAC keyed by the JWT secret, valid for five
minutes, and dead after five tries. An unknown phone gets a code row too (with no user and no SMS),
so both answers and the tries that follow behave the same and reveal nothing about accounts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from api.auth import queries
from api.auth.models import user_body
from api.auth.tokens import issue_token
from api.errors import Unauthorized
from api.messaging import templates
from api.messaging.service import queue_sms

log = logging.getLogger(__name__)

OTP_TTL = timedelta(minutes=5)
MAX_ATTEMPTS = 5
# A known phone's login also queues its SMS: about half a millisecond more, enough to tell accounts
# apart by timing over many tries (tests/chaos/test_abuse.py measured P(known slower) = 0.70). Every
# login answers no sooner than this, so both kinds take the same time on a server not overloaded.
LOGIN_FLOOR_S = 0.05


def hash_code(*, secret: str, phone: str, code: str) -> bytes:
    key = hashlib.sha256(b"packfleet-otp:" + secret.encode()).digest()
    return hmac.new(key, f"{phone}:{code}".encode(), hashlib.sha256).digest()


async def start_login(
    conn: AsyncConnection, *, secret: str, phone: str, user_type: str | None
) -> dict[str, Any] | None:
    """Store a fresh code for the phone and, when there is someone to text, queue its SMS in the
    same transaction (the outbox worker sends it); return that user, after LOGIN_FLOOR_S at least."""
    started = time.monotonic()
    code = f"{secrets.randbelow(10**6):06d}"
    expires_at = datetime.now(UTC) + OTP_TTL
    async with conn.transaction():
        user = await queries.user_by_phone(conn, phone)
        if user is not None and user_type is not None and user["role"] != user_type:
            user = None  # asked to log in as a role the phone does not have: same as unknown
        await queries.supersede_codes(conn, phone)
        code_id = await queries.insert_code(
            conn,
            phone=phone,
            user_id=None if user is None else user["id"],
            code_hash=hash_code(secret=secret, phone=phone, code=code),
            expires_at=expires_at,
        )
        if user is not None:
            sms = templates.otp(code, purpose="login", valid_minutes=int(OTP_TTL.total_seconds() // 60))
            await queue_sms(
                conn,
                to=phone,
                kind=sms.kind,
                text=sms.text,
                dedupe_key=f"login_otp:{code_id}",
                secret=True,
                send_before=expires_at,  # a code that arrives dead is not sent
                requested_by=user["id"],
            )
    log.info("login code issued", extra={"known": user is not None})
    await asyncio.sleep(max(0.0, LOGIN_FLOOR_S - (time.monotonic() - started)))
    return user


async def verify_code(
    conn: AsyncConnection, *, secret: str, phone: str, otp: str, ttl: timedelta
) -> dict[str, Any]:
    """Check the code; on success consume it and return the token and the user (401 otherwise)."""
    failure: Unauthorized | None = None
    user = None
    async with conn.transaction():  # commits the counted try even when the code is wrong
        row = await queries.latest_code(conn, phone)
        if row is None or row["consumed_at"] is not None:
            failure = Unauthorized("Request a new OTP", error="Invalid or expired OTP", code="OTP_INVALID")
        elif row["expires_at"] <= datetime.now(UTC):
            failure = Unauthorized(
                "The OTP has expired; request a new one", error="Invalid or expired OTP", code="OTP_EXPIRED"
            )
        else:
            attempts = await queries.count_attempt(conn, row["id"], max_attempts=MAX_ATTEMPTS)
            candidate = hash_code(secret=secret, phone=phone, code=otp)
            if attempts is None:
                failure = _locked()
            elif row["user_id"] is not None and hmac.compare_digest(candidate, bytes(row["code_hash"])):
                if await queries.consume_code(conn, row["id"]):
                    user = await queries.user_by_id(conn, row["user_id"])
            if failure is None and user is None:
                left = 0 if attempts is None else MAX_ATTEMPTS - attempts
                failure = (
                    _locked()
                    if left == 0
                    else Unauthorized(
                        f"Wrong OTP; {left} attempt{'s' if left != 1 else ''} left",
                        error="Invalid or expired OTP",
                        code="OTP_INVALID",
                    )
                )
    if failure is not None:
        raise failure
    assert user is not None
    token = issue_token(user, secret=secret, ttl=ttl)
    log.info("login", extra={"user_id": user["id"], "role": user["role"]})
    return {"success": True, "token": token, "expires_in": int(ttl.total_seconds()), "user": user_body(user)}


def _locked() -> Unauthorized:
    return Unauthorized("Too many wrong attempts; request a new OTP", error="OTP locked", code="OTP_LOCKED")
