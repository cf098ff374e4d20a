"""Database connections: one pool per process, opened by the process's main() or lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool


@asynccontextmanager
async def open_pool(
    url: str,
    *,
    name: str,
    min_size: int = 1,
    max_size: int = 10,
    open_timeout: float = 30.0,
    autocommit: bool = False,
) -> AsyncIterator[AsyncConnectionPool]:
    """Open an async pool whose connections return rows as dicts; close it on exit."""
    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        timeout=open_timeout,
        kwargs={"row_factory": dict_row, "application_name": f"packfleet-{name}", "autocommit": autocommit},
        configure=_utc_session,
    )
    await pool.open(wait=True, timeout=open_timeout)
    try:
        yield pool
    finally:
        await pool.close()


async def _utc_session(conn: psycopg.AsyncConnection[Any]) -> None:
    """Times leave the database as UTC whatever the server's zone (a SET rather than a startup
    option, which connection poolers such as PgBouncer refuse)."""
    await conn.execute("SET TIME ZONE 'UTC'")
    if not conn.autocommit:
        await conn.commit()


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[DictRow]:
    """One synchronous connection whose rows are dicts, for CLI commands and demo data."""
    return psycopg.Connection.connect(url, autocommit=autocommit, row_factory=dict_row)
