"""The MQTT fuzzer at running ingest workers: every bad message is one dead letter with its reason,
the workers never restart, and their memory stays flat."""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.parse import DEAD_LETTER_PAYLOAD_BYTES, REASONS, TOO_LARGE_PAYLOAD_BYTES
from schemas.device import MAX_PAYLOAD_BYTES
from tests import factories, services
from tests.chaos.fuzz_mqtt import REFUSED_BY_BROKER, invalid_messages
from tests.chaos.stack import Service, Supervisor
from tests.conftest import JWT_SECRET

pytestmark = pytest.mark.chaos

ROUNDS = int(os.environ.get("PACKFLEET_FUZZ_ROUNDS", "20"))
RSS_GROWTH_LIMIT = 16 * 2**20  # bytes a worker may grow between the first round and the last


@pytest.fixture
def ingest_workers(
    fresh_database_url: str, own_mosquitto: services.Mosquitto, tmp_path: Path
) -> Iterator[tuple[list[Service], Supervisor]]:
    tag = uuid.uuid4().hex[:6]
    env = {
        **os.environ,
        "PACKFLEET_DATABASE_URL": fresh_database_url,
        "PACKFLEET_MQTT_URL": own_mosquitto.url,
        "PACKFLEET_JWT_SECRET": JWT_SECRET,
        "PACKFLEET_LOG_JSON": "true",
        "PACKFLEET_INGEST_SHARE_GROUP": f"fuzz{tag}",
    }
    workers = [
        Service(f"ingest{i}", ["ingest"], {**env, "PACKFLEET_INGEST_CLIENT_ID": f"fuzz{i}-{tag}"}, tmp_path)
        for i in (1, 2)
    ]
    for worker in workers:
        worker.start()
    supervisor = Supervisor(workers)
    supervisor.start()
    try:
        yield workers, supervisor
    finally:
        for worker in workers:
            worker.supervised = False
            worker.stop()
        supervisor.stop()


def _publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"fuzzer-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _send(client: mqtt.Client, messages: list[tuple[str, bytes]]) -> None:
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(30)


def _rss(workers: list[Service]) -> list[int]:
    return [psutil.Process(w.pid).memory_info().rss for w in workers]


def _subscribed(client: mqtt.Client, db: psycopg.Connection, serial: str) -> None:
    """Publish valid readings until ingest stores one: its subscription is in place."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reading = {"ts": int(time.time() * 1000) - 60_000, "voltage": 48.0, "current": 1.0, "soc": 50.0}
        _send(client, [(f"batteries/{serial}/telemetry", json.dumps(reading).encode())])
        time.sleep(0.5)
        if _readings(db, serial):
            return
    raise AssertionError("ingest stored no reading within 30 s")


def _readings(db: psycopg.Connection, serial: str) -> int:
    return db.execute(
        "SELECT count(*) AS n FROM telemetry t JOIN batteries b ON b.id = t.battery_id "
        "WHERE b.serial_number = %s",
        (serial,),
    ).fetchone()["n"]


def test_fuzzed_messages_are_dead_lettered_and_workers_stay_up(
    ingest_workers: tuple[list[Service], Supervisor],
    own_mosquitto: services.Mosquitto,
    fresh_database_url: str,
) -> None:
    workers, supervisor = ingest_workers
    with psycopg.connect(fresh_database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        serial = factories.battery(db, dealer_id=factories.dealer(db)["id"])["serial_number"]
        rng = random.Random(13)
        client = _publisher(own_mosquitto.port)
        _subscribed(client, db, serial)
        started = time.time()
        sent: Counter[tuple[bytes, int]] = Counter()
        rss_after_first: list[int] = []
        valid_times: list[datetime] = []
        try:
            for round_no in range(ROUNDS):
                messages = list(invalid_messages(serial, factories.unique_serial("NOPE"), rng))
                # A valid reading of the provisioned battery in every round: stored, never dead-lettered.
                ts = int(started * 1000) - 1000 * (ROUNDS - round_no)
                valid = {"ts": ts, "voltage": 48.0, "current": 1.0, "soc": 50.0}
                valid_times.append(datetime.fromtimestamp(ts / 1000, UTC))
                messages.append((f"batteries/{serial}/telemetry", json.dumps(valid).encode()))
                _send(client, messages)
                sent.update(_kept(p) for _, p in messages[:-1])
                if round_no == 0:
                    _quiet(db)
                    rss_after_first = _rss(workers)
            _quiet(db)
            refused = _publisher(own_mosquitto.port)
            refused.publish(REFUSED_BY_BROKER, b'{"ts": 1}', qos=1)
            time.sleep(1.0)  # anything extra, the refused message too, would show up now
            refused.loop_stop()
        finally:
            client.loop_stop()
            client.disconnect()
        rows = db.execute("SELECT reason, payload, payload_size, topic FROM dead_letters").fetchall()
        stored = Counter((bytes(r["payload"]), r["payload_size"]) for r in rows)
        valid_stored = db.execute(
            "SELECT count(*) AS n FROM telemetry t JOIN batteries b ON b.id = t.battery_id "
            "WHERE b.serial_number = %s AND t.ts = ANY(%s)",
            (serial, valid_times),
        ).fetchone()["n"]
    growth = [after - before for before, after in zip(rss_after_first, _rss(workers), strict=True)]
    print(f"ingest RSS growth over {ROUNDS - 1} rounds: {[round(g / 2**20, 1) for g in growth]} MiB")
    assert supervisor.exits == [], f"a worker exited: {supervisor.exits}"
    assert max(growth) < RSS_GROWTH_LIMIT, f"worker memory grew {growth} bytes"
    assert valid_stored == ROUNDS, "the valid readings among the bad ones are stored, once each"
    assert all(r["reason"] in REASONS and r["topic"] for r in rows)
    missing = sorted({p[:120] for p, _ in sent - stored})
    assert stored == sent, f"not dead-lettered: {missing}; extra: {list(stored - sent)[:5]}"


def _quiet(db: psycopg.Connection, still_s: float = 1.5, within_s: float = 60) -> None:
    """Wait until the dead-letter count has stopped moving for `still_s`."""
    deadline = time.monotonic() + within_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = _dead_letters(db)
        if now != last:
            last, since = now, time.monotonic()
        elif now and time.monotonic() - since >= still_s:
            return
        time.sleep(0.1)


def _kept(payload: bytes) -> tuple[bytes, int]:
    """What the dead letter of this payload holds: its start (1 KiB of one too large), and its size."""
    kept = TOO_LARGE_PAYLOAD_BYTES if len(payload) > MAX_PAYLOAD_BYTES else DEAD_LETTER_PAYLOAD_BYTES
    return payload[:kept], len(payload)


def _dead_letters(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) AS n FROM dead_letters").fetchone()["n"]
