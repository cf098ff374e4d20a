"""The writer alone against the real database: one transaction per batch, idempotent, poison isolated."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from prometheus_client import REGISTRY

from ingest.batch import Message, message_weight
from ingest.parse import parse
from ingest.write import Writer
from tests.ingest.conftest import provision, scalar

NOW = datetime.now(UTC).replace(microsecond=0)


def msg(serial: str, soc: float, *, age_s: int = 0, mid: int = 1, kind: str = "telemetry") -> Message:
    topic = f"batteries/{serial}/{kind}"
    body = {"ts": (NOW - timedelta(seconds=age_s)).isoformat(), "voltage": 48.0, "current": 1.0, "soc": soc}
    payload = json.dumps(body).encode()
    parsed = parse(topic, payload)
    return Message(topic, payload, parsed, mid, 1, False, time.time(), 1, message_weight(parsed))


@pytest.fixture
def writer(fresh_database_url: str) -> Iterator[Writer]:
    w = Writer(fresh_database_url)
    yield w
    w.close()


def test_a_batch_written_twice_is_stored_once(writer: Writer, fresh_database_url: str) -> None:
    serials = provision(fresh_database_url, 3)
    batch = [msg(s, float(n), age_s=n) for s in serials for n in range(5)]
    assert writer.write(batch)
    assert writer.write(batch + batch[:2])  # a redelivery, and duplicates within one batch
    assert scalar(fresh_database_url, "SELECT count(*) FROM telemetry") == 15
    assert scalar(fresh_database_url, "SELECT count(*) FROM battery_latest WHERE soc = 0") == 3


def test_a_row_the_database_refuses_is_dead_lettered_and_the_rest_stored(
    writer: Writer, fresh_database_url: str
) -> None:
    # A constraint the contract does not know about stands in for any row PostgreSQL refuses.
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE telemetry ADD CONSTRAINT no_thirteen CHECK (soc <> 13)")
    [serial] = provision(fresh_database_url, 1)
    batch = [msg(serial, float(n), age_s=n) for n in range(20)]
    assert writer.write(batch)
    assert scalar(fresh_database_url, "SELECT count(*) FROM telemetry") == 19
    reason, detail = scalar(fresh_database_url, "SELECT ARRAY[reason, detail] FROM dead_letters")
    assert reason == "db_rejected" and "no_thirteen" in detail


def test_the_writer_reconnects_after_its_connection_is_killed(
    writer: Writer, fresh_database_url: str
) -> None:
    [serial] = provision(fresh_database_url, 1)
    assert writer.write([msg(serial, 1.0, age_s=1)])
    name = fresh_database_url.rsplit("/", 1)[1]
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'packfleet-ingest'",
            (name,),
        )
    assert writer.write([msg(serial, 2.0)])
    assert scalar(fresh_database_url, "SELECT count(*) FROM telemetry") == 2


def test_a_soft_deleted_battery_is_refused_once_its_cache_entry_expires(
    writer: Writer, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    [serial] = provision(fresh_database_url, 1)
    assert writer.write([msg(serial, 1.0, age_s=2)])
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        conn.execute("UPDATE batteries SET deleted_at = now() WHERE serial_number = %s", (serial,))
    monkeypatch.setattr("ingest.write.SERIAL_CACHE_SECONDS", 0.0)
    assert writer.write([msg(serial, 2.0)])
    assert scalar(fresh_database_url, "SELECT count(*) FROM telemetry") == 1
    assert scalar(fresh_database_url, "SELECT reason FROM dead_letters") == "deleted_battery"


def test_a_will_older_than_the_reported_state_is_stale(writer: Writer, fresh_database_url: str) -> None:
    # On a shared subscription another worker may take the will late: it was received before the
    # status that is already stored, so it must not mark the battery offline.
    [serial] = provision(fresh_database_url, 1)
    topic = f"batteries/{serial}/status"

    def status(payload: bytes, received: float) -> Message:
        parsed = parse(topic, payload)
        return Message(topic, payload, parsed, 1, 1, False, received, 1, 1)

    now = time.time()
    online = json.dumps({"online": True, "enabled": True, "ts": int(now * 1000)}).encode()
    assert writer.write([status(online, now)])
    assert writer.write([status(b'{"online": false}', now - 30)])
    assert scalar(fresh_database_url, "SELECT online FROM batteries") is True
    assert writer.write([status(b'{"online": false}', now + 1)])
    assert scalar(fresh_database_url, "SELECT online FROM batteries") is False


def test_a_status_contradicting_a_confirmed_disable_is_kept_visible_and_counted(
    writer: Writer, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    [serial] = provision(fresh_database_url, 1)
    topic = f"batteries/{serial}/status"
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        # A disable the device acknowledged as applied a minute ago (as control records it).
        conn.execute(
            """UPDATE batteries SET desired_enabled = false, desired_status = 'inactive', status = 'inactive',
                   reported_enabled = false, reported_spec = 'both', reported_at = now() - interval '1 minute'
               WHERE serial_number = %s""",
            (serial,),
        )
        conn.execute(
            """INSERT INTO commands (id, battery_id, action, status, reason, expires_at, finished_at)
               SELECT gen_random_uuid(), id, 'disable', 'succeeded', 'EMI overdue', now(), now()
               FROM batteries WHERE serial_number = %s""",
            (serial,),
        )

    def status(enabled: bool) -> Message:
        body = {"online": True, "enabled": enabled, "spec": "both", "ts": int(time.time() * 1000)}
        payload = json.dumps(body).encode()
        return Message(topic, payload, parse(topic, payload), 1, 1, False, time.time(), 1, 1)

    def counted() -> float:
        return REGISTRY.get_sample_value("ingest_status_contradictions_total") or 0.0

    before = counted()
    with caplog.at_level(logging.ERROR, logger="ingest.write"):
        assert writer.write([status(True)])
    row = scalar(
        fresh_database_url,
        "SELECT ARRAY[status, desired_status, reported_enabled::text] FROM batteries "
        "WHERE serial_number = %s",
        (serial,),
    )
    assert row == ["active", "inactive", "true"]  # the device runs: it says so, and the wish stands beside
    assert counted() == before + 1
    assert any("contradicts its desired state" in r.getMessage() for r in caplog.records)
    assert writer.write([status(True)])  # the same report again (a retained copy): not a new contradiction
    assert counted() == before + 1
    assert writer.write([status(False)])  # back as asked
    assert scalar(fresh_database_url, "SELECT status FROM batteries WHERE serial_number = %s", (serial,)) == (
        "inactive"
    )
    assert counted() == before + 1
    activity = scalar(
        fresh_database_url,
        "SELECT array_agg(actor || ':' || (detail->>'to') ORDER BY id) FROM battery_activity "
        "WHERE action = 'status_changed' AND actor <> 'system'",
    )
    assert activity == ["device:active", "device:inactive"]


@pytest.mark.parametrize(
    ("report", "stored"),
    [
        ({"enabled": True}, ["active", "true", "both"]),  # no spec: `enabled` names both switches
        ({"enabled": True, "spec": "charging"}, ["inactive", "false", "discharging"]),  # canonical form
        ({"spec": "both"}, ["active", "false", "charging"]),  # a spec alone says nothing
    ],
)
def test_a_status_describes_both_switches(
    writer: Writer, fresh_database_url: str, report: dict, stored: list[str]
) -> None:
    [serial] = provision(fresh_database_url, 1)
    topic = f"batteries/{serial}/status"
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        # a charging cut the device confirmed (charging off, discharging on), then an enable of both
        conn.execute(
            """UPDATE batteries SET desired_enabled = true, desired_spec = 'both', desired_status = 'active',
                   status = 'active', reported_enabled = false, reported_spec = 'charging',
                   reported_at = now() - interval '1 minute'
               WHERE serial_number = %s""",
            (serial,),
        )
    payload = json.dumps({"online": True, **report, "ts": int(time.time() * 1000)}).encode()
    assert writer.write([Message(topic, payload, parse(topic, payload), 1, 1, False, time.time(), 1, 1)])
    row = scalar(
        fresh_database_url,
        "SELECT ARRAY[status, reported_enabled::text, reported_spec] FROM batteries WHERE serial_number = %s",
        (serial,),
    )
    assert row == stored
