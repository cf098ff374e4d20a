"""JWTs: signed with HS256, carrying the user's id, role and dealer; verified strictly."""

from __future__ import annotations

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
    try:
        # An explicit algorithm list refuses `alg: none` and key-confusion tricks.
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "role"]}
        )
        role = claims["role"]
        if role not in ROLES:
            raise InvalidToken("unknown role")
        return Principal(
            user_id=int(claims["sub"]),
            role=role,
            dealer_id=claims.get("dealer_id"),
            consumer_id=claims.get("consumer_id"),
            name=claims.get("name"),
        )
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise InvalidToken(str(exc)) from exc
