"""Operator tools over the users table: add a user, mint a token for scripts (`packfleet user|token`)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import psycopg

from api.auth.models import E164
from api.auth.tokens import ROLES, issue_token


class AccountError(ValueError):
    """The user cannot be added or found as asked."""


def add_user(
    conn: psycopg.Connection, *, phone: str, name: str, role: str, dealer_id: int | None = None
) -> dict[str, Any]:
    """Create a user; a dealer user without a dealer gets a new dealer of its own name."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if not re.fullmatch(E164, phone):
        raise AccountError("phone must be in E.164 form, e.g. +919876543210")
    if role == "consumer":
        raise AccountError("consumers are created by their dealer through the API (POST /api/consumers)")
    with conn.transaction():
        if conn.execute("SELECT 1 FROM users WHERE phone = %s", (phone,)).fetchone():
            raise AccountError(f"a user with phone {phone} already exists")
        if role == "dealer" and dealer_id is None:
            dealer_id = conn.execute(
                "INSERT INTO dealers (name, phone) VALUES (%s, %s) RETURNING id", (name, phone)
            ).fetchone()["id"]
        elif (
            dealer_id is not None
            and not conn.execute("SELECT 1 FROM dealers WHERE id = %s", (dealer_id,)).fetchone()
        ):
            raise AccountError(f"dealer {dealer_id} does not exist")
        return conn.execute(
            """INSERT INTO users (phone, name, role, dealer_id) VALUES (%s, %s, %s, %s)
               RETURNING id, phone, name, role, dealer_id, consumer_id""",
            (phone, name, role, dealer_id),
        ).fetchone()


def token_for_phone(conn: psycopg.Connection, phone: str, *, secret: str, ttl: timedelta) -> str:
    user = conn.execute(
        "SELECT id, name, role, dealer_id, consumer_id FROM users WHERE phone = %s AND active", (phone,)
    ).fetchone()
    if user is None:
        raise AccountError(f"no active user with phone {phone}")
    return issue_token(user, secret=secret, ttl=ttl)
