"""Registering lenders and tying NBFC users to them (operators' tools: `packfleet nbfc ...`, `up`)."""

from __future__ import annotations

import re
import secrets
from typing import Any

import psycopg

CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class LenderError(ValueError):
    """The lender cannot be added or found as asked."""


def ensure_lender(
    conn: psycopg.Connection, *, code: str, name: str, api_base_url: str | None, secret: str | None = None
) -> dict[str, Any]:
    """The lender with this code, created with a new webhook secret (or the one given) if absent;
    its URL is updated when one is given."""
    if not CODE.match(code):
        raise LenderError("a lender code has 1 to 32 letters, digits, '_' or '-'")
    if api_base_url is not None and not api_base_url.startswith(("http://", "https://")):
        raise LenderError("the lender's API URL starts with http:// or https://")
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO nbfc_lenders (code, name, api_base_url, webhook_secret) VALUES (%s, %s, %s, %s)
               ON CONFLICT (code) DO UPDATE SET api_base_url = coalesce(EXCLUDED.api_base_url,
                                                                         nbfc_lenders.api_base_url)
               RETURNING *""",
            (code, name, api_base_url, secret or secrets.token_urlsafe(32)),
        ).fetchone()
    assert row is not None
    return row


def link_user(conn: psycopg.Connection, *, phone: str, code: str) -> dict[str, Any]:
    """Make an NBFC user act for the lender with this code."""
    with conn.transaction():
        row = conn.execute(
            """UPDATE users SET nbfc_id = (SELECT id FROM nbfc_lenders WHERE code = %s)
               WHERE phone = %s AND role = 'nbfc' AND EXISTS (SELECT 1 FROM nbfc_lenders WHERE code = %s)
               RETURNING id, phone, nbfc_id""",
            (code, phone, code),
        ).fetchone()
    if row is None:
        raise LenderError(f"no NBFC user with phone {phone}, or no lender {code}")
    return row
