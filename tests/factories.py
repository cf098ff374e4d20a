"""Rows for tests, written straight to the database (the API has its own tests)."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import psycopg

_phones = itertools.count(int(uuid.uuid4().int % 10**6) * 1000)


def unique_serial(prefix: str = "T") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12].upper()}"


def unique_phone() -> str:
    return f"+9190{next(_phones) % 10**8:08d}"


def dealer(conn: psycopg.Connection, name: str = "Test Motors") -> dict[str, Any]:
    return conn.execute("INSERT INTO dealers (name) VALUES (%s) RETURNING *", (name,)).fetchone()


def user(
    conn: psycopg.Connection,
    role: str,
    *,
    dealer_id: int | None = None,
    consumer_id: int | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    if role == "dealer" and dealer_id is None:
        dealer_id = dealer(conn)["id"]
    return conn.execute(
        """INSERT INTO users (phone, name, role, dealer_id, consumer_id)
           VALUES (%s, %s, %s, %s, %s) RETURNING *""",
        (unique_phone(), name or f"{role} user", role, dealer_id, consumer_id),
    ).fetchone()


def consumer(conn: psycopg.Connection, dealer_id: int, name: str = "Ram Kumar") -> dict[str, Any]:
    return conn.execute(
        "INSERT INTO consumers (dealer_id, name, phone) VALUES (%s, %s, %s) RETURNING *",
        (dealer_id, name, unique_phone()),
    ).fetchone()


def battery(
    conn: psycopg.Connection,
    *,
    dealer_id: int | None = None,
    serial: str | None = None,
    owner_id: int | None = None,
) -> dict[str, Any]:
    return conn.execute(
        "INSERT INTO batteries (serial_number, dealer_id, owner_id) VALUES (%s, %s, %s) RETURNING *",
        (serial or unique_serial(), dealer_id, owner_id),
    ).fetchone()
