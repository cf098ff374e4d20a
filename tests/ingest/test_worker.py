"""The worker against a real Mosquitto and PostgreSQL: stored once, newest kept, bad input contained."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from packfleet.settings import Settings
from tests import factories, services
from tests.ingest.conftest import Publisher, Worker, provision, readings, scalar, wait_for

NOW = datetime.now(UTC).replace(microsecond=0)
FUTURE = b"<a reading 10 minutes ahead, made at test time>"


def reading(ts: datetime, soc: float, **extra: object) -> dict[str, object]:
    return {"ts": ts.isoformat(), "voltage": 48.5, "current": -3.25, "soc": soc, **extra}


def stored(url: str, serial: str) -> list[dict[str, object]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            """SELECT t.* FROM telemetry t JOIN batteries b ON b.id = t.battery_id
               WHERE b.serial_number = %s ORDER BY t.ts""",
            (serial,),
        ).fetchall()


def latest(url: str, serial: str) -> dict[str, object] | None:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            """SELECT l.* FROM battery_latest l JOIN batteries b ON b.id = l.battery_id
               WHERE b.serial_number = %s""",
            (serial,),
        ).fetchone()


def battery(url: str, serial: str) -> dict[str, object]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM batteries WHERE serial_number = %s", (serial,)).fetchone()
        assert row is not None
        return row


def test_repeat_and_out_of_order_backlog_are_stored_once_with_newest_latest(
    worker: Worker, ingest_settings: Settings, own_mosquitto: services.Mosquitto
) -> None:
    url = ingest_settings.require_database_url()
    [serial] = provision(url, 1)
    topic = f"batteries/{serial}/telemetry"
    device = Publisher(own_mosquitto)
    try:
        newest = reading(NOW - timedelta(seconds=5), 70.0, temperature=30.5, lat=12.9716, lon=77.5946)
        device.send(topic, newest)
        device.send(topic, newest)  # the same reading again (a redelivery, a firmware retry)
        # After an outage: a backlog, out of order, overlapping what was already sent, all older.
        backlog = [reading(NOW - timedelta(minutes=m), 90.0 - m) for m in (3, 1, 4, 2)]
        device.send(topic, {"readings": [*backlog, newest, backlog[0]]})
        device.send(topic, {**backlog[0], "ts": int((NOW - timedelta(minutes=10)).timestamp() * 1000)})
        rows = wait_for(lambda: len(r := stored(url, serial)) >= 6 and r)
    finally:
        device.close()
    wait_for(lambda: latest(url, serial))
    # Give a wrong late write a chance to show up before asserting nothing more came.
    wait_for(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 6)
    assert [r["ts"] for r in rows] == sorted(
        {NOW - timedelta(minutes=m) for m in (10, 4, 3, 2, 1)} | {NOW - timedelta(seconds=5)}
    )
    top = latest(url, serial)
    assert top is not None
    assert top["ts"] == NOW - timedelta(seconds=5)
    assert (top["soc"], top["temperature"], top["lat"], top["lon"]) == (70.0, 30.5, 12.9716, 77.5946)
    assert battery(url, serial)["last_seen_at"] is not None


def test_latest_is_not_moved_back_by_an_older_reading(
    worker: Worker, ingest_settings: Settings, own_mosquitto: services.Mosquitto
) -> None:
    url = ingest_settings.require_database_url()
    [serial] = provision(url, 1)
    topic = f"batteries/{serial}/telemetry"
    device = Publisher(own_mosquitto)
    try:
        device.send(topic, reading(NOW, 50.0))
        wait_for(lambda: latest(url, serial))
        device.send(topic, reading(NOW - timedelta(hours=1), 99.0))
        wait_for(lambda: len(stored(url, serial)) == 2)
    finally:
        device.close()
    top = latest(url, serial)
    assert top is not None and top["ts"] == NOW and top["soc"] == 50.0


def test_status_and_will_update_the_battery(
    worker: Worker, ingest_settings: Settings, own_mosquitto: services.Mosquitto
) -> None:
    url = ingest_settings.require_database_url()
    [serial] = provision(url, 1)
    topic = f"batteries/{serial}/status"
    device = Publisher(own_mosquitto)
    try:
        device.send(
            topic,
            {"online": True, "enabled": False, "spec": "charging", "fw": "1.4.2", "ts": NOW.isoformat()},
            retain=True,
        )
        row = wait_for(lambda: (b := battery(url, serial))["online"] and b)
        assert (row["reported_enabled"], row["reported_spec"], row["firmware"]) == (
            False,
            "charging",
            "1.4.2",
        )
        assert row["reported_at"] == NOW and row["last_seen_at"] is not None
        # A stale status (older ts) arriving late changes nothing.
        device.send(topic, {"online": True, "enabled": True, "ts": (NOW - timedelta(hours=1)).isoformat()})
        # The device vanishes: the broker publishes its will.
        device.send(topic, {"online": False}, retain=True)
        row = wait_for(lambda: (b := battery(url, serial))["online"] is False and b)
    finally:
        device.close()
    assert (row["reported_enabled"], row["reported_spec"], row["firmware"]) == (False, "charging", "1.4.2")
    assert row["reported_at"] == NOW


def test_a_real_will_message_marks_the_battery_offline(
    worker: Worker, ingest_settings: Settings, own_mosquitto: services.Mosquitto
) -> None:

    url = ingest_settings.require_database_url()
    [serial] = provision(url, 1)
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{serial}", protocol=mqtt.MQTTv5)
    device.will_set(f"batteries/{serial}/status", json.dumps({"online": False}), qos=1, retain=True)
    device.connect("127.0.0.1", own_mosquitto.port, keepalive=5)
    device.loop_start()
    status = {"online": True, "enabled": True, "spec": "both", "fw": "2.0.0", "ts": NOW.isoformat()}
    device.publish(f"batteries/{serial}/status", json.dumps(status), qos=1, retain=True).wait_for_publish(5)
    wait_for(lambda: battery(url, serial)["online"])
    device.loop_stop()
    device.socket().close()  # an unclean end: the broker sends the will
    wait_for(lambda: battery(url, serial)["online"] is False)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe{}", "not_utf8"),
        (b"[1, 2]", "not_an_object"),
        (json.dumps({"ts": NOW.isoformat(), "voltage": 48.0, "soc": 50}).encode(), "missing_field"),
        (json.dumps(reading(NOW, 101.0)).encode(), "out_of_range"),
        (FUTURE, "future_ts"),
        (
            json.dumps({"ts": 0, "voltage": 48.0, "current": 1.0, "soc": 50}).encode(),
            "old_ts",
        ),  # a reset clock
        (json.dumps({"readings": []}).encode(), "bad_batch"),
        (b'{"pad": "' + b"x" * (256 * 1024) + b'"}', "too_large"),
    ],
)
def test_bad_telemetry_is_dead_lettered_with_its_reason(
    payload: bytes, reason: str, worker: Worker, ingest_settings: Settings, own_mosquitto: services.Mosquitto
) -> None:
    if payload is FUTURE:  # "the future" is measured when the test runs, not when it was collected
        payload = json.dumps(reading(datetime.now(UTC) + timedelta(minutes=10), 50.0)).encode()
    url = ingest_settings.require_database_url()
    [serial] = provision(url, 1)
    topic = f"batteries/{serial}/telemetry"
    device = Publisher(own_mosquitto)
    try:
        device.send(topic, payload)
        device.send(topic, reading(NOW, 42.0))  # and the worker keeps going
        wait_for(lambda: latest(url, serial))
    finally:
        device.close()
    with psycopg.connect(url, row_factory=dict_row) as conn:
        letters = conn.execute("SELECT * FROM dead_letters WHERE topic = %s", (topic,)).fetchall()
    assert len(letters) == 1
    letter = letters[0]
    assert letter["reason"] == reason and letter["detail"]
    assert letter["payload_size"] == len(payload)
    assert bytes(letter["payload"]) == payload[: 1024 if reason == "too_large" else 64 * 1024]
    assert letter["received_at"] > NOW - timedelta(minutes=1)


def test_unknown_and_deleted_batteries_are_dead_lettered_and_a_partial_batch_keeps_the_good_part(
    worker: Worker, ingest_settings: Settings, own_mosquitto: services.Mosquitto
) -> None:
    url = ingest_settings.require_database_url()
    good, deleted = provision(url, 2)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE batteries SET deleted_at = now() WHERE serial_number = %s", (deleted,))
    unknown = factories.unique_serial("NOPE")
    device = Publisher(own_mosquitto)
    try:
        device.send(f"batteries/{unknown}/telemetry", reading(NOW, 1.0))
        device.send(f"batteries/{deleted}/telemetry", reading(NOW, 1.0))
        device.send(f"batteries/{unknown}/status", {"online": True})
        device.send(
            f"batteries/{good}/telemetry",
            {"readings": [reading(NOW, 10.0), reading(NOW - timedelta(seconds=1), 400.0)]},
        )
        wait_for(lambda: scalar(url, "SELECT count(*) FROM dead_letters") == 4)
    finally:
        device.close()
    with psycopg.connect(url) as conn:
        reasons = dict(conn.execute("SELECT topic, reason FROM dead_letters").fetchall())
    assert reasons == {
        f"batteries/{unknown}/telemetry": "unknown_battery",
        f"batteries/{deleted}/telemetry": "deleted_battery",
        f"batteries/{unknown}/status": "unknown_battery",
        f"batteries/{good}/telemetry": "out_of_range",
    }
    assert [r["soc"] for r in stored(url, good)] == [10.0]
    assert scalar(url, "SELECT count(*) FROM telemetry") == 1


def test_protocol_3_uses_a_plain_subscription(
    ingest_settings: Settings, own_mosquitto: services.Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:

    settings = ingest_settings.model_copy(update={"mqtt_protocol": 3})
    url = settings.require_database_url()
    [serial] = provision(url, 1)
    caplog.set_level("INFO", logger="ingest")
    worker = Worker(settings).start()
    device = Publisher(own_mosquitto, protocol=mqtt.MQTTv311)
    try:
        device.send(f"batteries/{serial}/telemetry", reading(NOW, 33.0))
        wait_for(lambda: latest(url, serial))
    finally:
        device.close()
        worker.stop()
    notes = [getattr(r, "note", "") for r in caplog.records if r.name == "ingest.receive"]
    assert any("plain subscription" in n for n in notes)


def test_what_was_committed_is_acknowledged_and_never_redelivered(
    ingest_settings: Settings, own_mosquitto: services.Mosquitto
) -> None:

    url = ingest_settings.require_database_url()
    [serial] = provision(url, 1)
    topic = f"batteries/{serial}/telemetry"

    def received() -> float:
        return sum(
            REGISTRY.get_sample_value("ingest_messages_received_total", {"kind": k}) or 0.0
            for k in ("telemetry", "status", "invalid")
        )

    first = Worker(ingest_settings).start()
    device = Publisher(own_mosquitto)
    try:
        for n in range(50):
            device.send(topic, reading(NOW - timedelta(seconds=n), float(n)))
        device.send(topic, b"{broken")  # a dead letter is acknowledged too: it can never succeed
        wait_for(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 50)
        wait_for(lambda: scalar(url, "SELECT count(*) FROM dead_letters") == 1)
    finally:
        device.close()
        first.stop()
    before = received()
    # The same client id resumes the same persistent session: anything unacknowledged would come back.
    second = Worker(ingest_settings).start()
    time.sleep(1.0)
    second.stop()
    assert received() == before
    assert scalar(url, "SELECT count(*) FROM dead_letters") == 1


def test_the_worker_rides_out_a_broker_restart(
    worker: Worker, ingest_settings: Settings, own_mosquitto: services.Mosquitto
) -> None:

    url = ingest_settings.require_database_url()
    serials = provision(url, 10)
    messages = readings(serials, 60)
    first, second = messages[:300], messages[300:]
    device = Publisher(own_mosquitto)
    device.send_many(first)
    device.close()
    wait_for(lambda: scalar(url, "SELECT count(*) FROM telemetry") == len(first))
    own_mosquitto.restart()  # same port; the worker's persistent session is saved and restored
    wait_for(lambda: REGISTRY.get_sample_value("ingest_mqtt_connected") == 1.0, timeout=40)
    device = Publisher(own_mosquitto)
    device.send_many(second)
    device.close()
    wait_for(lambda: scalar(url, "SELECT count(*) FROM telemetry") == len(messages), timeout=20)


def test_the_oldest_accepted_reading_is_a_setting_and_refusals_are_counted(
    ingest_settings: Settings, own_mosquitto: services.Mosquitto
) -> None:
    url = ingest_settings.require_database_url()
    [serial] = provision(url, 1)
    counted = REGISTRY.get_sample_value("ingest_rejected_total", {"reason": "old_ts"}) or 0.0
    worker = Worker(ingest_settings.model_copy(update={"ingest_max_reading_age_days": 1})).start()
    device = Publisher(own_mosquitto)
    try:
        now = datetime.now(UTC)
        batch = [reading(now - timedelta(days=2), 1.0), reading(now - timedelta(hours=20), 2.0)]
        device.send(f"batteries/{serial}/telemetry", {"readings": batch})  # store-and-forward
        wait_for(lambda: scalar(url, "SELECT count(*) FROM dead_letters") == 1)
    finally:
        device.close()
        worker.stop()
    assert [r["soc"] for r in stored(url, serial)] == [2.0]  # within the bound: kept
    assert scalar(url, "SELECT reason FROM dead_letters") == "old_ts"
    assert REGISTRY.get_sample_value("ingest_rejected_total", {"reason": "old_ts"}) == counted + 1
