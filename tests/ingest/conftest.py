"""Ingest workers (in this process or as their own), and devices that speak the contract with paho."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from ingest.main import run
from packfleet.settings import Settings
from tests import factories, services
from tests.conftest import JWT_SECRET, make_settings
from tests.services import wait_for


class Worker:
    """`ingest.main.run` on its own event loop in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(run(self.settings, self._stop))
        except BaseException as exc:
            self.error = exc
        finally:
            self._loop.close()

    def start(self) -> Worker:
        self._thread.start()
        wait_for(lambda: REGISTRY.get_sample_value("ingest_mqtt_connected") == 1.0 or self.error)
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        assert not self._thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error


class WorkerProcess:
    """`python -m ingest` as its own OS process (for SIGKILL, memory and two-worker tests)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log_path = log
        self.metrics_port = int(env["PACKFLEET_METRICS_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}:\n{self.logs()[-3000:]}")
            return self.metric("ingest_mqtt_connected") == 1.0

        try:
            wait_for(ready, timeout=30)
        except BaseException:
            self.stop()  # never leave a worker process behind a failed test
            raise
        return self

    def metric(self, name: str, labels: str = "", *, patience: float = 0.0) -> float | None:
        """A value from the worker's Prometheus endpoint; None if it does not answer (within
        `patience` seconds: a busy worker on a loaded machine can be slow to)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
                break
            except httpx.HTTPError:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.1)
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def worker_env(database_url: str, broker: services.Mosquitto, **settings: object) -> dict[str, str]:
    env = {
        **os.environ,
        "PACKFLEET_DATABASE_URL": database_url,
        "PACKFLEET_MQTT_URL": broker.url,
        "PACKFLEET_JWT_SECRET": JWT_SECRET,
        "PACKFLEET_LOG_JSON": "true",
        "PACKFLEET_METRICS_PORT": str(services.free_port()),
        "PACKFLEET_INGEST_CLIENT_ID": f"ingest-test-{uuid.uuid4().hex[:8]}",
        "PACKFLEET_INGEST_SHARE_GROUP": f"g{uuid.uuid4().hex[:8]}",
    }
    env.update({f"PACKFLEET_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class Publisher:
    """A device (or many) publishing with plain paho, as firmware would."""

    def __init__(self, broker: services.Mosquitto, *, protocol: int = mqtt.MQTTv5) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=protocol
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(
        self, topic: str, payload: dict[str, Any] | bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, data, qos=qos, retain=retain).wait_for_publish(10)

    def send_many(self, messages: list[tuple[str, bytes]], *, rate: float | None = None) -> None:
        """Publish at QoS 1 (at `rate` per second when given) and wait until the broker has all."""
        infos = []
        started = time.monotonic()
        for n, (topic, data) in enumerate(messages):
            if rate is not None:
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            infos.append(self.client.publish(topic, data, qos=1))
        for info in infos:
            info.wait_for_publish(60)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def readings(serials: list[str], per_battery: int, *, start_ms: int | None = None) -> list[tuple[str, bytes]]:
    """Distinct readings, interleaved across batteries, one second apart per battery."""
    start = start_ms if start_ms is not None else int(time.time() * 1000) - per_battery * 1000 - 60_000
    out = []
    for i in range(per_battery):
        for n, serial in enumerate(serials):
            body = {"ts": start + i * 1000, "voltage": 48.0 + n % 10, "current": 1.5, "soc": i % 100}
            out.append((f"batteries/{serial}/telemetry", json.dumps(body).encode()))
    return out


def provision(url: str, count: int) -> list[str]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        dealer = factories.dealer(conn)
        return [factories.battery(conn, dealer_id=dealer["id"])["serial_number"] for _ in range(count)]


def scalar(url: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
        return None if row is None else row[0]


@pytest.fixture
def ingest_settings(fresh_database_url: str, own_mosquitto: services.Mosquitto) -> Settings:
    return make_settings(
        fresh_database_url,
        own_mosquitto.url,
        ingest_client_id=f"ingest-test-{uuid.uuid4().hex[:8]}",
        ingest_share_group=f"g{uuid.uuid4().hex[:8]}",
        ingest_batch_ms=50,
    )


@pytest.fixture
def worker(ingest_settings: Settings) -> Iterator[Worker]:
    w = Worker(ingest_settings).start()
    yield w
    w.stop()
