"""The ingest worker: receive → parse → batch → write, then acknowledge.

Three threads: paho's network thread receives and parses into the bounded Buffer; the writer
thread takes batches, commits them and only then acknowledges their messages; the asyncio task
that called `run` just starts, watches and stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

import psycopg

from ingest import metrics
from ingest.batch import Buffer
from ingest.memory import Releaser
from ingest.policies import apply_policies
from ingest.receive import Receiver
from ingest.write import Writer
from packfleet.metrics import serve_metrics
from packfleet.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_FLUSH_SECONDS = 10.0  # at stop, how long to keep trying to commit what is held


def drain(buffer: Buffer, writer: Writer, receiver: Receiver) -> None:
    """The writer thread: commit each batch, acknowledge it, make room for more."""
    releaser = Releaser()
    while True:
        batch = buffer.take(timeout=0.5)
        if batch is None:
            return
        if not batch:
            releaser.freed(0, idle=True)
            continue
        committed = writer.write(batch)
        if committed:
            receiver.ack(batch)
        buffer.release(batch)
        freed = sum(m.nbytes for m in batch)
        del batch  # its messages go now, not when the next batch replaces the name
        releaser.freed(freed, idle=buffer.pending == 0)
        if not committed:
            # Abandoned at shutdown: what is left is not acknowledged and comes back later.
            buffer.drop_pending()
            return


def _watch(buffer: Buffer) -> None:
    metrics.QUEUE_DEPTH.set_function(lambda: buffer.held)
    metrics.QUEUE_BYTES.set_function(lambda: buffer.held_bytes)

    def oldest_age() -> float:
        oldest = buffer.oldest_received()
        return 0.0 if oldest is None else max(time.time() - oldest, 0.0)

    metrics.OLDEST_UNACKED.set_function(oldest_age)


RETIRE_IDLE_SECONDS = 2.0  # retiring: once unsubscribed, this long without a message means drained


async def run(settings: Settings, stop: asyncio.Event, *, retire: bool = False) -> None:
    """Run one ingest worker until `stop` is set, then flush, acknowledge and disconnect.

    With `retire`, the worker instead takes what its session holds without subscribing, stops
    by itself once that is stored, and ends its session: how to remove a worker for good.
    """
    database_url = settings.require_database_url()
    buffer = Buffer(
        batch_rows=settings.ingest_batch_rows,
        batch_ms=settings.ingest_batch_ms,
        max_weight=settings.ingest_max_buffered,
        max_bytes=settings.ingest_max_buffered_mb * 2**20,
    )
    _watch(buffer)
    await asyncio.to_thread(_policies, settings, database_url)
    writer = Writer(database_url)
    receiver = Receiver(settings, buffer, retire=retire)
    try:
        serve_metrics(settings.metrics_port, settings.metrics_host)
    except OSError as exc:  # another service of this process may already serve the registry
        log.warning("metrics port unavailable", extra={"port": settings.metrics_port, "error": str(exc)})
    thread = threading.Thread(
        target=drain, args=(buffer, writer, receiver), name="ingest-writer", daemon=True
    )
    try:
        thread.start()
        receiver.start()
        log.info(
            "ingest worker started",
            extra={
                "mqtt": repr(settings.mqtt),
                "batch_rows": settings.ingest_batch_rows,
                "batch_ms": settings.ingest_batch_ms,
                "max_buffered": settings.ingest_max_buffered,
                "max_buffered_mb": settings.ingest_max_buffered_mb,
            },
        )
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            if not thread.is_alive():
                raise RuntimeError("the ingest writer thread died")
            if retire and _drained(receiver, buffer):
                log.info("retiring: everything the session held is stored")
                break
    finally:
        await asyncio.to_thread(_shutdown, buffer, writer, receiver, thread, retire)


def _drained(receiver: Receiver, buffer: Buffer) -> bool:
    return (
        receiver.unsubscribed.is_set()
        and buffer.held == 0
        and time.monotonic() - receiver.last_received >= RETIRE_IDLE_SECONDS
    )


def _policies(settings: Settings, database_url: str) -> None:
    """Bring TimescaleDB's compression and retention to the configured intervals (best effort)."""
    try:
        with psycopg.connect(database_url, connect_timeout=5, autocommit=True) as conn:
            apply_policies(
                conn, compress_after=settings.telemetry_compress_after, retention=settings.telemetry_retention
            )
    except psycopg.Error as exc:  # the database may be down at start: ingest must still run
        log.warning("could not apply telemetry policies", extra={"error": str(exc)})


def _shutdown(
    buffer: Buffer, writer: Writer, receiver: Receiver, thread: threading.Thread, retire: bool
) -> None:
    buffer.close()  # new messages are refused: unacknowledged, the broker keeps them
    deadline = time.monotonic() + SHUTDOWN_FLUSH_SECONDS
    # Flush what is held while the database answers; with it away, leave everything to the broker.
    while thread.is_alive() and time.monotonic() < deadline and not writer.failing:
        thread.join(0.1)
    writer.abandon.set()
    if thread.is_alive():
        thread.join(SHUTDOWN_FLUSH_SECONDS)
    # A retiring worker ends its session only when nothing it took is left unacknowledged.
    receiver.stop(end_session=retire and _drained(receiver, buffer) and not writer.failing)
    if not thread.is_alive():
        writer.close()
    log.info("ingest worker stopped", extra={"left_to_broker": buffer.pending})
