"""Pages of the battery-pack list, kept in this API process until a pack changes.

Every dashboard polls the same first pages of the list; building one cost PostgreSQL about a
millisecond of CPU per request even from the stored objects (bench/api.py). A page built once is
served again while nothing it can show has changed.

Never stale: every statement that can change a list notifies `packfleet_battery_packs` when its
transaction commits (migration 0035), and this process LISTENs on a connection of its own. Before a
page is served from memory, a query on that connection completes: PostgreSQL sends a listener the
notices of every transaction committed before a query ahead of the query's answer, so a change
committed before the request arrived has bumped `generation` by then, and pages of an older
generation are not served. One such round trip serves every request that arrived before it started
(requests that come in during one wait for the next), so there is one small query in flight at a
time, whatever the load. Without a listening connection (lost, silent for 5 s, reconnecting)
pages are built from the database on every request, as with the cache off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from prometheus_client import Counter
from psycopg import AsyncConnection, Notify

CHANNEL = "packfleet_battery_packs"
IDLE_ROUND_TRIP_S = 1.0  # reads the notices even when no request asks, and notices a lost connection
ROUND_TRIP_TIMEOUT_S = 5.0  # a listener slower than this is dropped (pages are built meanwhile)
RECONNECT_MAX_S = 30.0

log = logging.getLogger(__name__)

PAGES = Counter(
    "packfleet_api_battery_pack_pages",
    "Battery-pack list pages served: from memory (hit), built (miss), or built without the cache (bypass)",
    ["result"],
)

Page = tuple[str, int]  # the JSON array's text, the total that match


class PackPageCache:
    def __init__(self, database_url: str, *, max_bytes: int) -> None:
        self._url = database_url
        self._max_bytes = max_bytes
        self._listener: AsyncConnection[Any] | None = None
        self._generation = 0
        self._pages: OrderedDict[Hashable, tuple[int, Page]] = OrderedDict()
        self._bytes = 0
        self._building: dict[tuple[Hashable, int], asyncio.Future[Page | None]] = {}
        self._next_round: asyncio.Future[None] | None = None
        self._rounds: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()

    @property
    def listening(self) -> bool:
        return self._listener is not None

    async def start(self, *, wait: float = 5.0) -> None:
        """Start listening (in the background, reconnecting when lost); wait up to `wait` s for it."""
        self._keeper = asyncio.create_task(self._keep_listening(), name="pack-page-cache")
        try:
            await asyncio.wait_for(self._connected.wait(), wait)
        except TimeoutError:
            log.warning("battery-pack page cache not listening yet: pages are built per request")

    async def stop(self) -> None:
        for task in (self._keeper, self._rounds, *self._closing):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()

    async def page(self, key: Hashable, build: Callable[[], Awaitable[Page]]) -> Page:
        """The page for `key` (the caller's scope and every query parameter), as `build` would make
        it now: from memory when nothing has changed since it was built."""
        generation = await self._fresh_generation()
        if generation is None:
            PAGES.labels("bypass").inc()
            return await build()
        kept = self._pages.get(key)
        if kept is not None and kept[0] == generation:
            self._pages.move_to_end(key)
            PAGES.labels("hit").inc()
            return kept[1]
        # One build per page and generation: the requests that find it changed wait for one query.
        building = self._building.get((key, generation))
        if building is not None:
            page = await asyncio.shield(building)
            if page is not None:
                PAGES.labels("hit").inc()
                return page
            PAGES.labels("bypass").inc()  # that build failed: try on our own
            return await build()
        PAGES.labels("miss").inc()
        future: asyncio.Future[Page | None] = asyncio.get_running_loop().create_future()
        self._building[key, generation] = future
        try:
            page = await build()
        except BaseException:
            future.set_result(None)
            raise
        finally:
            del self._building[key, generation]
        future.set_result(page)
        if generation == self._generation:  # built from data no older than the generation says
            self._keep(key, generation, page)
        return page

    def _keep(self, key: Hashable, generation: int, page: Page) -> None:
        size = len(page[0])
        if size > self._max_bytes:
            return
        old = self._pages.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1][0])
        self._pages[key] = (generation, page)
        self._bytes += size
        while self._bytes > self._max_bytes:
            _, (_, (text, _)) = self._pages.popitem(last=False)
            self._bytes -= len(text)

    def _changed(self, _notice: Notify | None = None) -> None:
        self._generation += 1
        self._pages.clear()
        self._bytes = 0

    async def _fresh_generation(self) -> int | None:
        """The generation after a round trip on the listener that started after this call (every
        change committed before it has been counted), or None when not listening."""
        if self._listener is None:
            return None
        if self._next_round is None:
            self._next_round = asyncio.get_running_loop().create_future()
            if self._rounds is None or self._rounds.done():
                self._rounds = asyncio.create_task(self._round_trips())
        await asyncio.shield(self._next_round)
        return self._generation if self._listener is not None else None

    async def _round_trips(self) -> None:
        """Round trips while requests wait for one; each answers those that came before it began."""
        while (waiting := self._next_round) is not None:
            self._next_round = None
            try:
                if (listener := self._listener) is not None:
                    # The notices arrive ahead of its answer. (Not wait_for: it would wait for the
                    # cancelled query to wind down, on a server that may not answer at all.)
                    trip = asyncio.ensure_future(listener.execute("SELECT 1"))
                    done, _ = await asyncio.wait({trip}, timeout=ROUND_TRIP_TIMEOUT_S)
                    failure = trip.exception() if done else TimeoutError("the listener does not answer")
                    if failure is not None:
                        self._drop(failure, trip)
            finally:  # on a dropped listener the waiters find `listening` False: built per request
                waiting.set_result(None)

    async def _keep_listening(self) -> None:
        delay = 0.5
        while True:
            listener = None
            try:
                listener = await AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    application_name="packfleet-api-pack-pages",
                    connect_timeout=int(ROUND_TRIP_TIMEOUT_S),
                )
                listener.add_notify_handler(self._changed)
                await listener.execute(f"LISTEN {CHANNEL}")
                self._changed()  # what changed while nobody listened is unknown
                self._listener = listener
                self._connected.set()
                delay = 0.5
                log.info("battery-pack page cache listening", extra={"channel": CHANNEL})
                while self._listener is listener:
                    await asyncio.sleep(IDLE_ROUND_TRIP_S)
                    await self._fresh_generation()
            except asyncio.CancelledError:
                if listener is not None and listener is not self._listener:
                    await listener.close()
                raise
            except Exception as exc:
                if listener is not None and listener is not self._listener:
                    await listener.close()
                self._drop(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _drop(self, exc: BaseException, trip: asyncio.Future[Any] | None = None) -> None:
        """Stop serving from memory at once; close the listener in the background."""
        listener, self._listener = self._listener, None
        self._changed()
        log.warning(
            "battery-pack page cache stopped listening; pages are built per request until it is back",
            extra={"error": repr(exc)},
        )
        if listener is not None:
            closing = asyncio.create_task(self._close(listener, trip))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(listener: AsyncConnection[Any], trip: asyncio.Future[Any] | None) -> None:
        if trip is not None and not trip.done():
            trip.cancel()
            await asyncio.gather(trip, return_exceptions=True)
        await listener.close()
