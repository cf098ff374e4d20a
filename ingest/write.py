"""Write a batch of messages in one transaction: readings, latest values, statuses, dead letters.

Readings are COPYed into a temporary staging table and moved into telemetry by one
`INSERT ... SELECT ... ON CONFLICT DO NOTHING`, so a redelivered reading is stored once. While the
database is unreachable the writer keeps retrying the same batch with backoff; nothing is
acknowledged meanwhile, so nothing is lost.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import errors

from ingest import metrics, queries
from ingest.batch import Message
from ingest.parse import (
    DB_REJECTED,
    DELETED_BATTERY,
    UNKNOWN_BATTERY,
    DeadLetter,
    ParsedReadings,
    StatusUpdate,
    dead_letter,
)
from schemas import state

log = logging.getLogger(__name__)

SERIAL_CACHE_SECONDS: Final = 60.0  # a soft-deleted battery stops being accepted within this
LAST_SEEN_RESOLUTION: Final = 5.0  # seconds; finer last_seen_at updates would rewrite batteries rows
_SEEN_MEMORY: Final = 200_000  # batteries remembered for that; forgotten all at once beyond
BACKOFF_MIN: Final = 0.2
BACKOFF_MAX: Final = 5.0


@dataclass
class Stored:
    """What one committed batch did."""

    readings: int = 0
    duplicates: int = 0
    statuses: int = 0
    dead_letters: list[str] = field(default_factory=list)  # reasons
    seen: dict[int, float] = field(default_factory=dict)
    contradictions: list[dict[str, Any]] = field(default_factory=list)  # batteries, as returned


def _confirmed_statuses(
    changed: list[dict[str, Any]],
) -> tuple[dict[int, tuple[str, str]], list[dict[str, Any]]]:
    """The statuses the batteries' reported switches now make, where they change (id → (was, now));
    and the reports that newly contradict the desired state while no command is on its way (a device
    going back on what its ack confirmed, or changing on its own)."""
    confirmed: dict[int, tuple[str, str]] = {}
    contradictions: list[dict[str, Any]] = []
    for row in changed:  # in order: a battery's last row is its newest state
        if row["reported_enabled"] is None:
            continue
        switches = state.switches(row["reported_enabled"], row["reported_spec"])
        status = state.status_of(switches, wanted=row["desired_status"], current=row["status"])
        if status != row["status"]:
            confirmed[row["id"]] = (row["status"], status)
        else:
            confirmed.pop(row["id"], None)
        was = None if row["was_enabled"] is None else state.switches(row["was_enabled"], row["was_spec"])
        desired = (row["desired_enabled"], row["desired_spec"])
        if (
            was != switches
            and not row["command_pending"]
            and not state.in_sync(desired, (row["reported_enabled"], row["reported_spec"]))
        ):
            contradictions.append(row)
    return confirmed, contradictions


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Writer:
    """Owns one database connection (opened lazily, reopened after a failure)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._batteries: dict[str, tuple[int, float]] = {}  # serial → (id, cached at)
        self._seen_written: dict[int, float] = {}
        self.abandon = threading.Event()  # set at shutdown: stop retrying, leave it to the broker
        self._down_since: float | None = None

    @property
    def failing(self) -> bool:
        """True while the database is refusing or unreachable."""
        return self._down_since is not None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, batch: list[Message]) -> bool:
        """Commit a batch, retrying until it is stored; False only if abandoned at shutdown."""
        delay = BACKOFF_MIN
        while True:
            try:
                self._write_once(batch)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._reset_after_error()
                if isinstance(exc, errors.TransactionRollback):  # a deadlock or serialization failure
                    metrics.DB_ERRORS.labels("conflict").inc()
                    log.info("batch rolled back by a conflict; retrying", extra={"error": str(exc)})
                    pause = BACKOFF_MIN
                else:
                    metrics.DB_ERRORS.labels("connection").inc()
                    self._note_failure(exc, len(batch))
                    pause, delay = delay, min(delay * 2, BACKOFF_MAX)
                if self.abandon.wait(pause * random.uniform(0.8, 1.2)):
                    return False
                continue
            except psycopg.Error as exc:
                # The database refused something in the batch itself: find it by halving.
                metrics.DB_ERRORS.labels("rejected").inc()
                self._reset_after_error()
                if len(batch) == 1:
                    return self._write_rejected(batch[0], exc)
                half = len(batch) // 2
                return self.write(batch[:half]) and self.write(batch[half:])
            if self._down_since is not None:
                log.info(
                    "database is back; writing again",
                    extra={"down_seconds": round(time.monotonic() - self._down_since, 1)},
                )
                self._down_since = None
            return True

    def _note_failure(self, exc: Exception, messages: int) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "database write failed; holding the batch unacknowledged and retrying",
                extra={"error": str(exc).strip(), "messages": messages},
            )

    def _reset_after_error(self) -> None:
        if self._conn is not None and (self._conn.broken or self._conn.closed):
            self.close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            conn = psycopg.connect(
                self._url,
                connect_timeout=5,
                application_name="packfleet-ingest",
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                options="-c statement_timeout=60000",
            )
            queries.create_staging(conn)
            conn.commit()
            self._conn = conn
        return self._conn

    def _write_once(self, batch: list[Message]) -> None:
        started = time.perf_counter()
        conn = self._connection()
        with conn.transaction():
            stored = self._store(conn, batch)
        self._committed(batch, stored, time.perf_counter() - started)

    def _store(self, conn: psycopg.Connection[Any], batch: list[Message]) -> Stored:
        stored = Stored()
        serials = {m.parsed.serial for m in batch if not isinstance(m.parsed, DeadLetter)}
        refs = self._resolve(conn, serials)
        rows: list[tuple[Any, ...]] = []
        statuses: list[dict[str, Any]] = []
        letters: list[tuple[Any, ...]] = []

        def reject(letter: DeadLetter, received: float) -> None:
            letters.append(
                (
                    letter.topic,
                    letter.reason,
                    letter.detail,
                    _utc(received),
                    letter.payload,
                    letter.payload_size,
                )
            )
            stored.dead_letters.append(letter.reason)

        for m in batch:
            parsed = m.parsed
            if isinstance(parsed, DeadLetter):
                reject(parsed, m.received)
                continue
            ref = refs[parsed.serial]
            if isinstance(ref, str):
                reject(dead_letter(m.topic, m.payload, ref, f"battery {parsed.serial!r}: {ref}"), m.received)
                continue
            if isinstance(parsed, ParsedReadings):
                rows.extend([(ref, *row) for row in parsed.rows])
                if parsed.rejected is not None:
                    reject(parsed.rejected, m.received)
                if m.received > stored.seen.get(ref, 0.0):
                    stored.seen[ref] = m.received
            else:
                statuses.append(self._status_params(ref, parsed, m))

        if rows:
            queries.copy_staging(conn, rows)
            stored.readings = queries.insert_telemetry(conn)
            stored.duplicates = len(rows) - stored.readings
            queries.upsert_latest(conn)
        touch = {
            i: _utc(t)
            for i, t in stored.seen.items()
            if t - self._seen_written.get(i, 0.0) >= LAST_SEEN_RESOLUTION
        }
        if touch or statuses:
            queries.lock_batteries(conn, set(touch) | {s["id"] for s in statuses})
        if touch:
            queries.touch_last_seen(conn, touch)
        if statuses:
            changed = queries.apply_statuses(conn, statuses)
            stored.statuses = len(statuses)
            confirmed, stored.contradictions = _confirmed_statuses(changed)
            if confirmed:
                queries.update_statuses(conn, confirmed)
        if letters:
            queries.insert_dead_letters(conn, letters)
        stored.seen = {i: t for i, t in stored.seen.items() if i in touch}
        return stored

    @staticmethod
    def _status_params(battery_id: int, status: StatusUpdate, m: Message) -> dict[str, Any]:
        received = _utc(m.received)
        # A device clock running ahead must not pin reported_at in the future.
        stamp = min(status.ts, received) if status.ts is not None else received
        reports = any(v is not None for v in (status.enabled, status.spec, status.firmware, status.ts))
        if not status.online:
            seen = None  # the will message: the broker speaks for a device that is gone
        elif m.retain:
            seen = stamp if status.ts is not None else None  # an old retained copy, not a sighting
        else:
            seen = received
        # A status describes both switches: without `spec`, `enabled` names both (the contract). It
        # is stored in the canonical form control and the desired state use; a `spec` alone says nothing.
        enabled, spec = (
            (None, None)
            if status.enabled is None
            else state.canonical(state.switches(status.enabled, status.spec or "both"))
        )
        return {
            "id": battery_id,
            "online": status.online,
            "enabled": enabled,
            "spec": spec,
            "firmware": status.firmware,
            "reported_at": stamp if reports else None,
            "as_of": stamp,
            "seen": seen,
        }

    def _resolve(self, conn: psycopg.Connection[Any], serials: set[str]) -> dict[str, int | str]:
        """serial → battery id, or the dead-letter reason for a battery we must not accept."""
        now = time.monotonic()
        refs: dict[str, int | str] = {}
        missing: list[str] = []
        for serial in serials:
            cached = self._batteries.get(serial)
            if cached is not None and now - cached[1] < SERIAL_CACHE_SECONDS:
                refs[serial] = cached[0]
            else:
                missing.append(serial)
        if missing:
            found = queries.find_batteries(conn, missing)
            for serial in missing:
                if serial not in found:
                    refs[serial] = UNKNOWN_BATTERY
                elif found[serial][1]:
                    refs[serial] = DELETED_BATTERY
                    self._batteries.pop(serial, None)
                else:
                    refs[serial] = found[serial][0]
                    self._batteries[serial] = (found[serial][0], now)
        return refs

    def _committed(self, batch: list[Message], stored: Stored, seconds: float) -> None:
        if len(self._seen_written) > _SEEN_MEMORY:
            self._seen_written.clear()
        self._seen_written.update(stored.seen)
        metrics.READINGS_STORED.inc(stored.readings)
        metrics.READINGS_DUPLICATE.inc(stored.duplicates)
        metrics.STATUS_UPDATES.inc(stored.statuses)
        for reason in stored.dead_letters:
            metrics.REJECTED.labels(reason).inc()
        for row in stored.contradictions:
            metrics.STATUS_CONTRADICTIONS.inc()
            log.error(
                "a battery reports a state that contradicts its desired state, with no command pending",
                extra={
                    "serial": row["serial_number"],
                    "desired": {"enabled": row["desired_enabled"], "spec": row["desired_spec"]},
                    "reported": {"enabled": row["reported_enabled"], "spec": row["reported_spec"]},
                },
            )
        metrics.BATCH_ROWS.observe(stored.readings + stored.duplicates)
        metrics.FLUSH_SECONDS.observe(seconds)
        if stored.dead_letters:
            log.info(
                "messages dead-lettered",
                extra={"count": len(stored.dead_letters), "reasons": sorted(set(stored.dead_letters))},
            )

    def _write_rejected(self, message: Message, exc: psycopg.Error) -> bool:
        """The database refused this one message: keep it as a dead letter instead."""
        log.error("database refused a message", extra={"topic": message.topic, "error": str(exc)})
        if isinstance(message.parsed, DeadLetter) and message.parsed.reason == DB_REJECTED:
            return True  # even its dead letter was refused: logged above, nothing more to try
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(message.parsed, DeadLetter):  # its payload is what the letter kept
            refused = message.parsed
            letter = DeadLetter(
                refused.topic, DB_REJECTED, detail[:2000], refused.payload, refused.payload_size
            )
        else:
            letter = dead_letter(message.topic, message.payload, DB_REJECTED, detail)
        substitute = Message(
            message.topic,
            message.payload,
            letter,
            message.mid,
            message.qos,
            message.retain,
            message.received,
            message.generation,
            message.weight,
            message.nbytes,
        )
        return self.write([substitute])
