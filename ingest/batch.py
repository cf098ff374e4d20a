"""The bounded buffer between the MQTT thread and the writer: batches by rows or by age.

Messages stay counted here from receipt until the writer has committed and acknowledged them, so
the bound covers everything the worker holds: readings (and messages), and bytes, since a few
thousand large payloads weigh more than a million small readings. When either bound is reached,
`put` blocks the MQTT network thread: the socket is no longer read, TCP pushes back, and the broker
keeps the rest queued.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from ingest.parse import DeadLetter, Parsed, ParsedReadings


@dataclass(slots=True)
class Message:
    """One received MQTT message: what it said, and what acknowledging it takes."""

    topic: str
    payload: bytes
    parsed: Parsed
    mid: int
    qos: int
    retain: bool
    received: float  # time.time() at receipt
    generation: int  # the MQTT connection it came on; acks go only to that connection
    weight: int  # see message_weight
    nbytes: int = 0  # see message_bytes


# What a parsed reading costs in memory: a 7-tuple, a datetime and four floats (sys.getsizeof).
ROW_BYTES = 256


def message_weight(parsed: Parsed) -> int:
    """What a message counts against PACKFLEET_INGEST_MAX_BUFFERED: its readings, or one."""
    return len(parsed.rows) if isinstance(parsed, ParsedReadings) else 1


def message_bytes(parsed: Parsed, payload: bytes) -> int:
    """What a message holds in memory: the payload kept, its dead letter's copy, its readings."""
    if isinstance(parsed, DeadLetter):
        return len(payload) + len(parsed.payload)
    held = len(payload)
    if isinstance(parsed, ParsedReadings):
        held += len(parsed.rows) * ROW_BYTES
        if parsed.rejected is not None:
            held += len(parsed.rejected.payload)
    return held


class Buffer:
    """Thread-safe: one producer (the MQTT thread), one consumer (the writer)."""

    def __init__(self, *, batch_rows: int, batch_ms: int, max_weight: int, max_bytes: int = 2**62) -> None:
        self.batch_rows = batch_rows
        self.batch_seconds = batch_ms / 1000
        self.max_weight = max(max_weight, 1)
        self.max_bytes = max(max_bytes, 1)
        self._cond = threading.Condition()
        self._pending: deque[Message] = deque()
        self._pending_rows = 0
        self._first_at = 0.0  # monotonic time the oldest pending message arrived
        self._held = 0  # weight received and not yet released (pending + being written)
        self._held_bytes = 0  # their bytes
        self._in_flight_since: float | None = None  # receipt time of the batch being written
        self._closed = False
        self.blocked_seconds = 0.0  # total time the MQTT thread waited for room

    @property
    def held(self) -> int:
        return self._held

    @property
    def held_bytes(self) -> int:
        return self._held_bytes

    def _full(self) -> bool:
        return self._held >= self.max_weight or self._held_bytes >= self.max_bytes

    @property
    def pending(self) -> int:
        return len(self._pending)

    def oldest_received(self) -> float | None:
        """Receipt time (time.time()) of the oldest message not yet acknowledged."""
        if self._in_flight_since is not None:
            return self._in_flight_since
        try:
            return self._pending[0].received
        except IndexError:
            return None

    def put(self, message: Message) -> bool:
        """Add a message, waiting while the buffer is full; False once closed (not taken)."""
        with self._cond:
            if self._full() and not self._closed:
                started = time.monotonic()
                while self._full() and not self._closed:
                    self._cond.wait(0.5)
                self.blocked_seconds += time.monotonic() - started
            if self._closed:
                return False
            if not self._pending:
                self._first_at = time.monotonic()
                self._cond.notify_all()  # the writer starts the batch's clock
            self._pending.append(message)
            rows = len(message.parsed.rows) if isinstance(message.parsed, ParsedReadings) else 1
            self._pending_rows += rows
            self._held += message.weight
            self._held_bytes += message.nbytes
            if self._pending_rows >= self.batch_rows:
                self._cond.notify_all()
            return True

    def take(self, timeout: float = 0.5) -> list[Message] | None:
        """The next batch when it is full or old enough (or the buffer closed); None when done.

        Returns an empty list when nothing became ready within `timeout`.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._pending and (
                    self._closed
                    or self._pending_rows >= self.batch_rows
                    or time.monotonic() - self._first_at >= self.batch_seconds
                ):
                    return self._take_locked()
                if self._closed:
                    return None
                now = time.monotonic()
                if now >= deadline:
                    return []
                wait = deadline - now
                if self._pending:
                    wait = min(wait, self._first_at + self.batch_seconds - now)
                self._cond.wait(max(wait, 0.001))

    def _take_locked(self) -> list[Message]:
        batch: list[Message] = []
        rows = 0
        while self._pending and rows < self.batch_rows:
            message = self._pending.popleft()
            batch.append(message)
            rows += len(message.parsed.rows) if isinstance(message.parsed, ParsedReadings) else 1
        self._pending_rows -= rows
        self._first_at = time.monotonic()  # the remainder is due as soon as the writer is back
        if self._pending:
            self._first_at -= self.batch_seconds
        self._in_flight_since = batch[0].received
        return batch

    def release(self, batch: list[Message]) -> None:
        """The writer is done with a batch (acknowledged, or given up to be redelivered)."""
        with self._cond:
            self._held -= sum(m.weight for m in batch)
            self._held_bytes -= sum(m.nbytes for m in batch)
            self._in_flight_since = None
            self._cond.notify_all()

    def close(self) -> None:
        """Refuse new messages; `take` hands out what is pending, then returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drop_pending(self) -> list[Message]:
        """Forget what was never written (at shutdown): the broker redelivers it."""
        with self._cond:
            dropped = list(self._pending)
            self._pending.clear()
            self._pending_rows = 0
            self._held -= sum(m.weight for m in dropped)
            self._held_bytes -= sum(m.nbytes for m in dropped)
            self._cond.notify_all()
            return dropped
