"""Whether the account behind a valid token still stands as the token says.

A JWT stays valid until it expires (a day by default). A user who is deactivated, or whose role,
dealer or consumer changes, must not keep the access the old token describes: each API process
rechecks the account at most every `PACKFLEET_AUTH_RECHECK_SECONDS` per user (one indexed lookup),
so such a change takes effect within that time without a query on every request.

The lookups go through a connection of their own, not the API's pool: a route takes its pooled
connection before its caller is authenticated, so a check that waited for a second pooled
connection would, with as many new tokens at once as the pool has connections, have every request
hold one and wait for another until the pool timed out (tests/api/test_account_standing.py).
Lookups are rare (once per user per recheck period) and take a fraction of a millisecond, so one
connection, used one lookup at a time, serves them.
"""

from __future__ import annotations

import asyncio
import time

import psycopg
from psycopg.rows import dict_row

from api.auth import queries
from api.auth.tokens import Principal
from api.errors import ServiceUnavailable

APPLICATION_NAME = "packfleet-api-auth"
Account = tuple[str, int | None, int | None]  # role, dealer, consumer


class AccountStanding:
    def __init__(self, database_url: str, *, recheck_seconds: float) -> None:
        self._url = database_url
        self._recheck = recheck_seconds
        self._checked: dict[int, tuple[Account | None, float]] = {}
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def stands(self, principal: Principal) -> bool:
        """True while the user is active with the role and scope the token carries."""
        now = time.monotonic()
        kept = self._checked.get(principal.user_id)
        if kept is None or now - kept[1] >= self._recheck:
            user = await self._lookup(principal.user_id)  # None when inactive or gone
            account = None if user is None else (user["role"], user["dealer_id"], user["consumer_id"])
            kept = self._checked[principal.user_id] = (account, now)
        return kept[0] == (principal.role, principal.dealer_id, principal.consumer_id)

    async def _lookup(self, user_id: int) -> dict | None:  # type: ignore[type-arg]
        """The user's row; a 503 (ServiceUnavailable) while the database cannot be reached.

        The connection sits idle between lookups, so after a database restart the first lookup
        finds it closed by the server: that one is retried at once on a new connection. The error
        is raised as an ApiError because RequestGuard checks tokens outside the routes' exception
        handlers, where a psycopg error would have been a 500.
        """
        async with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = await psycopg.AsyncConnection.connect(
                            self._url,
                            autocommit=True,
                            row_factory=dict_row,
                            application_name=APPLICATION_NAME,
                        )
                    return await queries.user_by_id(self._conn, user_id)
                except psycopg.OperationalError as exc:
                    if self._conn is not None:
                        await self._conn.close()  # the next try connects again
                    if attempt == 2:
                        raise ServiceUnavailable() from exc
            raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
