"""Battery detail lookups of concurrent requests, gathered into one query.

`GET /api/batteries/{serial}` is the busiest read. One query per request cost each request a pool
checkout and a round trip (a third of the API's CPU for it) and PostgreSQL a statement. Here the
serials asked for while a query is under way wait for the next one, which fetches them all
(`serial_number = ANY(...)`): under load a query serves tens of requests, and idle, a request waits
for nothing but its own. At most `in_flight` queries run at once per process.

Every request's query starts after the request arrived, so it sees every change committed before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg_pool import AsyncConnectionPool

from api.batteries import queries
from api.errors import InvalidData
from schemas.topics import is_valid_serial

Row = dict[str, Any]


class BatteryDetails:
    def __init__(self, pool: AsyncConnectionPool, *, in_flight: int = 2) -> None:
        self._pool = pool
        self._in_flight = in_flight
        self._running = 0
        self._waiting: dict[str, list[asyncio.Future[Row | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, serial: str) -> Row | None:
        """The live battery with this serial and its latest reading and open command, or None."""
        # A value that fails the query would fail the whole batch: answer it here.
        if "\x00" in serial:
            raise InvalidData()
        if not is_valid_serial(serial):
            return None  # no battery has such a serial
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(serial, []).append(future)
        if self._running < self._in_flight:
            self._running += 1
            task = asyncio.create_task(self._fetch_while_waiting())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(future)

    async def _fetch_while_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    async with self._pool.connection() as conn:
                        rows = await queries.get_battery_details(conn, list(batch))
                except Exception as exc:  # each request of the batch answers with the error
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                                future.exception()  # retrieved: a caller that went away is fine
                    continue
                found = {row["serial_number"]: row for row in rows}
                for serial, futures in batch.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found.get(serial))
        finally:
            self._running -= 1
