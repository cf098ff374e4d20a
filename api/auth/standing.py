"""Whether the account behind a valid token still stands as the token says.

A JWT stays valid until it expires (a day by default). A user who is deactivated, or whose role,
dealer or consumer changes, must not keep the access the old token describes: each API process
rechecks the account at most every `PACKFLEET_AUTH_RECHECK_SECONDS` per user (one indexed lookup),
so such a change takes effect within that time without a query on every request.
"""

from __future__ import annotations

import time

from psycopg_pool import AsyncConnectionPool

from api.auth import queries
from api.auth.tokens import Principal


class AccountStanding:
    def __init__(self, pool: AsyncConnectionPool, *, recheck_seconds: float) -> None:
        self._pool = pool
        self._recheck = recheck_seconds
        self._checked: dict[int, tuple[tuple[str, int | None, int | None] | None, float]] = {}

    async def stands(self, principal: Principal) -> bool:
        """True while the user is active with the role and scope the token carries."""
        now = time.monotonic()
        kept = self._checked.get(principal.user_id)
        if kept is None or now - kept[1] >= self._recheck:
            async with self._pool.connection() as conn:
                user = await queries.user_by_id(conn, principal.user_id)  # None when inactive or gone
            account = None if user is None else (user["role"], user["dealer_id"], user["consumer_id"])
            kept = self._checked[principal.user_id] = (account, now)
        return kept[0] == (principal.role, principal.dealer_id, principal.consumer_id)
