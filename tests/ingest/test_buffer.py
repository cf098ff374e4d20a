"""The bounded buffer: batches by rows or age, blocks the receiver when full, never grows past its bound."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from ingest.batch import Buffer, Message, message_weight
from ingest.parse import ParsedReadings, Row, dead_letter

ROW: Row = (datetime.now(UTC), 48.0, 1.0, 50.0, None, None, None)


def message(rows: int = 1, mid: int = 1) -> Message:
    parsed = ParsedReadings("B", (ROW,) * rows)
    return Message("batteries/B/telemetry", b"{}", parsed, mid, 1, False, time.time(), 1, rows)


def test_a_full_batch_is_ready_at_once_and_capped_at_batch_rows() -> None:
    buffer = Buffer(batch_rows=3, batch_ms=60_000, max_weight=100)
    for mid in range(5):
        buffer.put(message(mid=mid))
    batch = buffer.take(timeout=0.1)
    assert batch is not None and [m.mid for m in batch] == [0, 1, 2]
    # The remainder has already waited for the writer: it is due at once, not after batch_ms.
    rest = buffer.take(timeout=0.1)
    assert rest is not None and [m.mid for m in rest] == [3, 4]


def test_a_partial_batch_waits_for_batch_ms() -> None:
    buffer = Buffer(batch_rows=1000, batch_ms=200, max_weight=10_000)
    started = time.monotonic()
    buffer.put(message())
    assert buffer.take(timeout=0.05) == []
    batch = buffer.take(timeout=1.0)
    assert batch is not None and len(batch) == 1
    assert 0.18 <= time.monotonic() - started < 0.6


def test_put_blocks_when_full_until_the_writer_releases() -> None:
    buffer = Buffer(batch_rows=10, batch_ms=1, max_weight=100)
    for _ in range(100):
        assert buffer.put(message())
    assert buffer.held == 100
    done = threading.Event()
    threading.Thread(target=lambda: (buffer.put(message(mid=999)), done.set()), daemon=True).start()
    assert not done.wait(0.3), "put must block while the buffer is full"
    batch = buffer.take(timeout=0.1)
    assert batch is not None
    assert not done.wait(0.1), "taking is not enough: room comes only after the batch is acknowledged"
    buffer.release(batch)
    assert done.wait(2)
    assert buffer.held == 91


def test_close_wakes_a_blocked_put_and_hands_out_the_rest() -> None:
    buffer = Buffer(batch_rows=1000, batch_ms=60_000, max_weight=100)
    buffer.put(message(rows=100))
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(buffer.put(message())), daemon=True)
    thread.start()
    time.sleep(0.1)
    buffer.close()
    thread.join(2)
    assert results == [False]
    rest = buffer.take(timeout=0.1)
    assert rest is not None and len(rest) == 1
    buffer.release(rest)
    assert buffer.take(timeout=0.1) is None


def test_big_dead_letters_weigh_by_payload() -> None:
    payload = b"x" * 200_000
    letter = dead_letter("batteries/B/telemetry", payload, "too_large", "big")
    assert message_weight(letter, payload) == 1 + 64  # only the kept 64 KiB is held
    assert message_weight(ParsedReadings("B", (ROW,) * 10), b"x" * 2048) == 12


def test_oldest_unacked_covers_the_batch_being_written() -> None:
    buffer = Buffer(batch_rows=1, batch_ms=1, max_weight=100)
    first = message()
    buffer.put(first)
    assert buffer.oldest_received() == first.received
    batch = buffer.take(timeout=0.1)
    assert batch is not None and buffer.oldest_received() == first.received
    buffer.release(batch)
    assert buffer.oldest_received() is None
