"""JWTs: signed with HS256, carrying the user's id, role and dealer; verified strictly."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

ALGORITHM = "HS256"
ROLES = ("admin", "dealer", "consumer", "technician", "nbfc")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the authenticated user and what they may reach."""

    user_id: int
    role: str
    dealer_id: int | None = None
    consumer_id: int | None = None
    name: str | None = None

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"


class InvalidToken(Exception):
    """The token is missing, forged, of the wrong algorithm, or expired."""


def issue_token(user: dict[str, Any], *, secret: str, ttl: timedelta) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user["id"]),
        "role": user["role"],
        "dealer_id": user.get("dealer_id"),
        "consumer_id": user.get("consumer_id"),
        "name": user.get("name"),
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, *, secret: str) -> Principal:
    return _verify(token, secret=secret)[0]


def _verify(token: str, *, secret: str) -> tuple[Principal, float]:
    """The principal and the token's expiry (epoch seconds)."""
    try:
        # An explicit algorithm list refuses `alg: none` and key-confusion tricks.
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "role"]}
        )
        role = claims["role"]
        if role not in ROLES:
            raise InvalidToken("unknown role")
        principal = Principal(
            user_id=int(claims["sub"]),
            role=role,
            dealer_id=claims.get("dealer_id"),
            consumer_id=claims.get("consumer_id"),
            name=claims.get("name"),
        )
        return principal, float(claims["exp"])
    except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
        raise InvalidToken(str(exc)) from exc


class TokenVerifier:
    """`verify_token` with a bounded cache of tokens already verified, each kept until it expires.

    A client sends the same token with every request; verifying it costs more CPU than the rest
    of a battery lookup (PyJWT checks the HMAC key's form on every call). A cached token is the
    exact string that passed verification with this secret, so the answer cannot differ; only its
    expiry is checked again. Failures are not cached.
    """

    def __init__(self, secret: str, *, size: int = 10_000) -> None:
        self._secret = secret
        self._size = size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def __call__(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None:
            principal, expires = hit
            if time.time() < expires:
                return principal
            del self._verified[token]
            raise InvalidToken("Signature has expired")
        principal, expires = _verify(token, secret=self._secret)
        self._verified[token] = (principal, expires)
        if len(self._verified) > self._size:
            self._verified.popitem(last=False)  # the oldest verified first
        return principal
