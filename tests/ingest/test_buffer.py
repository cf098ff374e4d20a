"""The bounded buffer: batches by rows or age, blocks the receiver when full, never grows past its bound."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from ingest.batch import ROW_BYTES, Buffer, Message, message_bytes, message_weight
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


def test_messages_weigh_their_readings_and_hold_their_bytes() -> None:
    payload = b"x" * 200_000
    too_large = dead_letter("batteries/B/telemetry", payload, "too_large", "big")
    assert message_weight(too_large) == 1 and message_bytes(too_large, b"") == 1024  # a prefix only
    invalid = dead_letter("batteries/B/telemetry", payload, "invalid_json", "bad")
    assert message_bytes(invalid, b"") == 64 * 1024  # the first 64 KiB, as stored
    readings = ParsedReadings("B", (ROW,) * 10)
    assert message_weight(readings) == 10 and message_bytes(readings, b"x" * 2048) == 2048 + 10 * ROW_BYTES


def test_a_full_buffer_in_bytes_blocks_until_released() -> None:
    buffer = Buffer(batch_rows=1, batch_ms=60_000, max_weight=1000, max_bytes=100_000)
    big = message()
    big.nbytes = 100_000
    buffer.put(big)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (buffer.put(message(mid=2)), done.set()), daemon=True)
    thread.start()
    assert not done.wait(0.3)  # one message, but its bytes are at the bound
    batch = buffer.take(timeout=0.1)
    assert batch == [big] and not done.wait(0.2)  # written is not yet released
    buffer.release(batch)
    assert done.wait(2) and buffer.held_bytes == 0


def test_oldest_unacked_covers_the_batch_being_written() -> None:
    buffer = Buffer(batch_rows=1, batch_ms=1, max_weight=100)
    first = message()
    buffer.put(first)
    assert buffer.oldest_received() == first.received
    batch = buffer.take(timeout=0.1)
    assert batch is not None and buffer.oldest_received() == first.received
    buffer.release(batch)
    assert buffer.oldest_received() is None
