"""Test batteries speaking the MQTT contract with paho-mqtt (no project code), and helpers to run control."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from control.main import run
from packfleet.settings import Settings
from tests.services import REPO, wait_for


class Device:
    """One battery: receives commands on its cmd topic and acknowledges them as firmware would.

    `mode`: "ack" (received, then applied), "slow" (applied 0.3 s after received), "silent" (never
    answers), "reject", "received" (only received), "opposite" (says applied but reports the opposite
    state: firmware that failed to switch), "stateless" (says applied without saying its state).
    A repeated id is treated as already done: it is acknowledged again but not re-applied. With
    `online`, it announces itself with a status at once; off by default, because control re-sends
    undelivered commands on `online: true`, which would race with the commands a test issues right
    after.
    """

    def __init__(
        self, port: int, serial: str, *, mode: str = "ack", protocol: int = 5, online: bool = False
    ) -> None:
        self.serial = serial
        self.mode = mode
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.applied: list[str] = []
        self.expiry_intervals: list[int | None] = []  # MQTT 5 message expiry of each command received
        self.enabled = True
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"dev-{serial}",
            protocol=mqtt.MQTTv5 if protocol == 5 else mqtt.MQTTv311,
        )
        self.client.will_set(f"batteries/{serial}/status", json.dumps({"online": False}), qos=1, retain=True)
        self.client.on_message = self._on_command
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect  # (re)subscribe on every connect, as firmware would
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "device did not subscribe"
        if online:
            self.status(online=True)

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, _reason: Any, _props: Any = None) -> None:
        client.subscribe(f"batteries/{self.serial}/cmd", qos=1)

    def status(self, *, online: bool) -> None:
        body = {
            "online": online,
            "enabled": self.enabled,
            "spec": "both",
            "fw": "1.0.0",
            "ts": datetime.now(UTC).isoformat(),
        }
        self.client.publish(
            f"batteries/{self.serial}/status", json.dumps(body), qos=1, retain=True
        ).wait_for_publish(5)

    def ack(
        self,
        command_id: str,
        stage: str,
        *,
        enabled: bool | None = None,
        error: str | None = None,
        topic_serial: str | None = None,
        raw: bytes | None = None,
    ) -> None:
        body: dict[str, Any] = {"id": command_id, "stage": stage, "ts": datetime.now(UTC).isoformat()}
        if enabled is not None:
            body["enabled"] = enabled
        if error is not None:
            body["error"] = error
        topic = f"batteries/{topic_serial or self.serial}/cmd/ack"
        self.client.publish(topic, raw if raw is not None else json.dumps(body), qos=1).wait_for_publish(5)

    def ids(self) -> list[str]:
        with self._lock:
            return [c["id"] for _, c in self.received]

    def _on_command(self, _client: Any, _userdata: Any, msg: Any) -> None:
        command = json.loads(msg.payload)
        self.expiry_intervals.append(getattr(msg.properties, "MessageExpiryInterval", None))
        with self._lock:
            repeated = any(c["id"] == command["id"] for _, c in self.received)
            done = command["id"] in self.applied
            self.received.append((time.monotonic(), command))
        if self.mode == "silent":
            return
        if self.mode == "reject":
            self._publish_ack(command["id"], "received", None)
            self._publish_ack(command["id"], "rejected", self.enabled, error="pack temperature too high")
            return
        if repeated:  # already done (or being done): say so again, do not apply twice
            self._publish_ack(
                command["id"], "applied" if done else "received", self.enabled if done else None
            )
            return
        self._publish_ack(command["id"], "received", None)
        if self.mode == "received":
            return
        if self.mode == "slow":
            threading.Timer(0.3, self._apply, args=(command,)).start()
            return
        self._apply(command)

    def _apply(self, command: dict[str, Any]) -> None:
        if self.mode == "opposite":
            self.enabled = command["action"] != "enable"
        elif self.mode != "stateless":
            self.enabled = command["action"] == "enable"
        with self._lock:
            self.applied.append(command["id"])
        self._publish_ack(command["id"], "applied", None if self.mode == "stateless" else self.enabled)

    def _publish_ack(
        self, command_id: str, stage: str, enabled: bool | None, error: str | None = None
    ) -> None:
        body: dict[str, Any] = {"id": command_id, "stage": stage, "ts": datetime.now(UTC).isoformat()}
        if enabled is not None:
            body["enabled"] = enabled
        if error:
            body["error"] = error
        self.client.publish(f"batteries/{self.serial}/cmd/ack", json.dumps(body), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class ControlThread:
    """The control service in a thread of the test process (its own event loop)."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self.connected = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> ControlThread:
        self._thread.start()
        assert self.connected.wait(15), "control did not connect"
        return self

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await run(self.settings, self._stop, client_id=self.client_id, on_connected=self.connected.set)

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self.connected.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive(), "control did not stop"
        if self.error is not None:
            raise self.error


class ControlProcess:
    """The control service as its own OS process (`python -m control`), for SIGKILL tests."""

    def __init__(self, settings: Settings, client_id: str, log: Path) -> None:
        self.client_id = client_id
        self.env = {
            **os.environ,
            "PACKFLEET_DATABASE_URL": settings.require_database_url(),
            "PACKFLEET_MQTT_URL": settings.mqtt_url or "",
            "PACKFLEET_MQTT_PROTOCOL": str(settings.mqtt_protocol),
            "PACKFLEET_COMMAND_RETRY_BASE_SECONDS": str(settings.command_retry_base_seconds),
            "PACKFLEET_COMMAND_RETRY_MAX_SECONDS": str(settings.command_retry_max_seconds),
            "PACKFLEET_CONTROL_CLIENT_ID": client_id,
            "PACKFLEET_LOG_JSON": "false",
            "PACKFLEET_LOG_LEVEL": "INFO",
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ControlProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "control"], env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        proc = self.proc

        def connected() -> bool:
            assert proc.poll() is None, self.log.read_text()[-3000:]
            return b"connected to the broker" in self.log.read_bytes()[offset:]

        wait_for(connected, timeout=20)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
