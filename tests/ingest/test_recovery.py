"""Delivery guarantees with workers as their own processes: SIGKILL, a database outage, two workers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from packfleet.settings import Settings
from tests import services
from tests.ingest.conftest import (
    Publisher,
    Worker,
    WorkerProcess,
    provision,
    readings,
    scalar,
    wait_for,
    worker_env,
)


def _publish_in_background(
    broker: services.Mosquitto, messages: list[tuple[str, bytes]], rate: float | None = None
) -> threading.Thread:
    def send() -> None:
        publisher = Publisher(broker)
        try:
            publisher.send_many(messages, rate=rate)
        finally:
            publisher.close()

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _assert_each_reading_stored_once(url: str, serials: list[str], per_battery: int) -> None:
    with psycopg.connect(url) as conn:
        counts = conn.execute(
            """SELECT b.serial_number, count(*), count(DISTINCT t.ts), max(t.soc) - min(t.soc)
               FROM telemetry t JOIN batteries b ON b.id = t.battery_id GROUP BY 1"""
        ).fetchall()
    assert {serial: (n, distinct) for serial, n, distinct, _ in counts} == {
        s: (per_battery, per_battery) for s in serials
    }


def _session_present(broker: services.Mosquitto, client_id: str) -> bool:
    """Whether the broker still keeps a session for this client id (it must not be created here)."""
    flags: list[bool] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = lambda _c, _u, f, _r, _p: flags.append(f.session_present)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0  # and leave none behind
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    client.loop_start()
    try:
        wait_for(lambda: flags, timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()
    return flags[0]


def _ingest_backends(url: str) -> int:
    sql = """SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'packfleet-ingest'"""
    return int(scalar(url, sql))


def _count(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM telemetry"))


def test_sigkill_mid_stream_loses_nothing_and_stores_nothing_twice(
    fresh_database_url: str, own_mosquitto: services.Mosquitto, tmp_path: Path
) -> None:
    url = fresh_database_url
    serials = provision(url, 50)
    messages = readings(serials, 400)
    assert len(messages) == 20_000
    env = worker_env(url, own_mosquitto, ingest_batch_rows=500, ingest_batch_ms=50)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    publisher = _publish_in_background(own_mosquitto, messages)
    try:
        wait_for(lambda: _count(url) >= 3000, timeout=30)
        worker.kill()  # mid-batch: some rows committed and unacknowledged, some in memory only
        # A COMMIT the server had already received still completes: count once its backend is gone.
        wait_for(lambda: not _ingest_backends(url), timeout=10)
        at_kill = _count(url)
        assert at_kill < len(messages), "the kill came too late to prove anything"
        publisher.join(60)  # the broker keeps what arrives meanwhile for the worker's session
        restarted = WorkerProcess(env, tmp_path / "worker.log").start()
        wait_for(lambda: _count(url) >= len(messages), timeout=60)
        time.sleep(0.5)  # anything redelivered late must still be stored only once
        _assert_each_reading_stored_once(url, serials, 400)
        stored = restarted.metric("ingest_readings_stored_total", patience=10)
        assert stored == len(messages) - at_kill
        assert restarted.stop() == 0
    finally:
        worker.stop()
    assert "Traceback" not in worker.logs()


@pytest.mark.parametrize("protocol", [5, 3])
def test_a_10s_database_outage_loses_nothing_and_memory_stays_bounded(
    protocol: int, fresh_database_url: str, admin_url: str, own_mosquitto: services.Mosquitto, tmp_path: Path
) -> None:
    # MQTT 5: the worker's Receive Maximum makes the broker stop at the bound. MQTT 3.1.1 has no
    # such thing: the full buffer blocks paho's thread and TCP pushes back on the broker.
    url = fresh_database_url
    name = url.partition("?")[0].rsplit("/", 1)[1]
    serials = provision(url, 20)
    messages = readings(serials, 600)  # 12,000 readings over ~12 s
    bound = 2000
    env = worker_env(
        url,
        own_mosquitto,
        ingest_max_buffered=bound,
        ingest_batch_rows=500,
        ingest_batch_ms=50,
        mqtt_protocol=protocol,
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    assert worker.proc is not None
    process = psutil.Process(worker.proc.pid)
    publisher = _publish_in_background(own_mosquitto, messages, rate=1000)
    try:
        wait_for(lambda: _count(url) >= 1000, timeout=30)
        rss_before = process.memory_info().rss
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            depths, rss = [], []
            try:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    depth = worker.metric("ingest_queue_depth")
                    if depth is not None:
                        depths.append(depth)
                    rss.append(process.memory_info().rss)
                    time.sleep(0.2)
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        publisher.join(60)
        wait_for(lambda: _count(url) >= len(messages), timeout=60)
        time.sleep(0.5)
        _assert_each_reading_stored_once(url, serials, 600)
        # The buffer filled up to its bound and no further: the broker held the rest.
        assert depths and bound * 0.75 <= max(depths) <= bound, depths
        assert max(rss) - rss_before < 40 * 2**20, (rss_before, max(rss))
        assert (worker.metric("ingest_db_errors_total", 'kind="connection"', patience=10) or 0) > 0
        assert wait_for(lambda: worker.metric("ingest_queue_depth", patience=10) == 0)
    finally:
        assert worker.stop() == 0
    assert "database is back" in worker.logs()


def test_two_workers_split_a_shared_subscription_and_store_each_reading_once(
    fresh_database_url: str, own_mosquitto: services.Mosquitto, tmp_path: Path
) -> None:
    url = fresh_database_url
    serials = provision(url, 20)
    messages = readings(serials, 300)
    env_a = worker_env(url, own_mosquitto)
    env_b = {
        **env_a,
        "PACKFLEET_INGEST_CLIENT_ID": f"ingest-test-{uuid.uuid4().hex[:8]}",
        "PACKFLEET_METRICS_PORT": str(services.free_port()),
    }
    workers = [
        WorkerProcess(env_a, tmp_path / "a.log").start(),
        WorkerProcess(env_b, tmp_path / "b.log").start(),
    ]
    try:
        _publish_in_background(own_mosquitto, messages).join(60)
        wait_for(lambda: _count(url) >= len(messages), timeout=30)
        time.sleep(0.3)
        _assert_each_reading_stored_once(url, serials, 300)
        shares = [w.metric("ingest_readings_stored_total", patience=10) or 0.0 for w in workers]
        assert all(share > 0 for share in shares), shares
        assert sum(shares) == len(messages)
    finally:
        for w in workers:
            assert w.stop() == 0


def test_stopping_during_an_outage_is_prompt_and_leaves_everything_to_the_broker(
    ingest_settings: Settings, admin_url: str, own_mosquitto: services.Mosquitto
) -> None:
    url = ingest_settings.require_database_url()
    name = url.partition("?")[0].rsplit("/", 1)[1]
    serials = provision(url, 5)
    messages = readings(serials, 40)
    worker = Worker(ingest_settings).start()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            _publish_in_background(own_mosquitto, messages).join(30)
            time.sleep(0.5)  # the worker holds them and keeps failing to write
            started = time.monotonic()
            worker.stop()
            assert time.monotonic() - started < 5
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    again = Worker(ingest_settings).start()
    try:
        wait_for(lambda: _count(url) >= len(messages), timeout=30)
        _assert_each_reading_stored_once(url, serials, 40)
    finally:
        again.stop()


def test_a_retired_worker_hands_over_its_share_and_leaves_no_session_behind(
    fresh_database_url: str, own_mosquitto: services.Mosquitto, tmp_path: Path
) -> None:
    # Mosquitto keeps giving a stopped worker's session its share of a shared subscription.
    url = fresh_database_url
    serials = provision(url, 10)
    messages = readings(serials, 60)
    first, second = messages[:300], messages[300:]
    env_a = worker_env(url, own_mosquitto)
    env_b = {
        **env_a,
        "PACKFLEET_INGEST_CLIENT_ID": f"ingest-test-{uuid.uuid4().hex[:8]}",
        "PACKFLEET_METRICS_PORT": str(services.free_port()),
    }
    a = WorkerProcess(env_a, tmp_path / "a.log").start()
    b = WorkerProcess(env_b, tmp_path / "b.log").start()
    try:
        a.kill()  # its session stays subscribed and collects half of what follows
        _publish_in_background(own_mosquitto, first).join(30)
        wait_for(lambda: _count(url) >= len(first) // 3, timeout=20)
        assert _count(url) < len(first), "the stopped worker's share should be waiting in its session"
        retiring = subprocess.run(
            [sys.executable, "-m", "ingest", "--retire"],
            env=env_a,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=60,
            check=False,
        )
        assert retiring.returncode == 0, retiring.stdout.decode()[-3000:]
        assert _count(url) == len(first)
        assert not _session_present(own_mosquitto, env_a["PACKFLEET_INGEST_CLIENT_ID"])
        _publish_in_background(own_mosquitto, second).join(30)  # all of it for the one left
        wait_for(lambda: _count(url) >= len(messages), timeout=20)
        _assert_each_reading_stored_once(url, serials, 60)
    finally:
        assert b.stop() == 0
