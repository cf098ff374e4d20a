"""Rate limits of the spec: auth per IP (and per phone), API per user, uploads per user.

Counters live in memory by default (one API process) or in Redis when `PACKFLEET_REDIS_URL` is set,
so that several API processes share them. Limits use the `limits` notation (`5/minute`).
An exceeded limit answers 429 with the spec's body and a `Retry-After` header.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from api.errors import TooManyRequests
from packfleet.settings import Settings


@dataclass(frozen=True)
class RateLimits:
    """One limiter per API process, built from the settings."""

    limiter: SlidingWindowCounterRateLimiter
    auth: RateLimitItem
    api: RateLimitItem
    upload: RateLimitItem

    async def hit(self, item: RateLimitItem, *key: str) -> None:
        """Count one request against `item` for `key`; raise 429 when over the limit."""
        if await self.limiter.hit(item, *key):
            return
        stats = await self.limiter.get_window_stats(item, *key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests(
            "Too many requests. Please try again later.",
            headers={"Retry-After": str(retry_after)},
            extra={"retry_after": retry_after},
        )


def build_rate_limits(settings: Settings) -> RateLimits:
    if settings.redis_url:
        uri = "async+" + settings.redis_url
        storage = storage_from_string(uri, implementation="redispy", key_prefix="packfleet")
    else:
        storage = storage_from_string("async+memory://")
    return RateLimits(
        # Two counters per key (O(1) per request) rather than a timestamp per request (moving window).
        limiter=SlidingWindowCounterRateLimiter(storage),
        auth=parse(settings.rate_limit_auth),
        api=parse(settings.rate_limit_api),
        upload=parse(settings.rate_limit_upload),
    )


def rate_limits(request: Request) -> RateLimits:
    """The app's limiter, built on first use from the app's settings."""
    state = request.app.state
    limits_ = getattr(state, "rate_limits", None)
    if limits_ is None:
        limits_ = state.rate_limits = build_rate_limits(state.settings)
    return limits_


def client_ip(request: Request) -> str:
    # Behind a proxy, uvicorn's --proxy-headers sets request.client from X-Forwarded-For.
    return request.client.host if request.client else "unknown"


async def limit_auth(request: Request) -> None:
    """Dependency of the login endpoints: the auth limit per client IP."""
    limits_ = rate_limits(request)
    await limits_.hit(limits_.auth, "auth-ip", client_ip(request))


async def limit_upload(request: Request) -> None:
    """Dependency of upload endpoints: the upload limit per authenticated user."""
    principal = getattr(request.state, "principal", None)
    key = f"user:{principal.user_id}" if principal is not None else f"ip:{client_ip(request)}"
    limits_ = rate_limits(request)
    await limits_.hit(limits_.upload, "upload", key)


async def limit_api(request: Request, user_id: int) -> None:
    """The API limit per authenticated user; called by the authentication dependency."""
    limits_ = rate_limits(request)
    await limits_.hit(limits_.api, "api", str(user_id))
