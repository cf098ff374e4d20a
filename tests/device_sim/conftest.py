"""Helpers for simulator tests: the simulator on a thread of its own, and a paho client as the cloud."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device_sim.main import SimOptions, run
from packfleet.settings import Settings


class SimThread:
    """`device_sim.main.run` in its own event loop on a thread, stopped on exit."""

    def __init__(self, settings: Settings, options: SimOptions) -> None:
        self.settings, self.options = settings, options
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            await run(self.settings, self.stop, self.options)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by __exit__
            self.error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> SimThread:
        self.thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.loop is not None and self.stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the simulator did not stop"
        if self.error is not None:
            raise self.error


class Cloud:
    """A paho-mqtt client playing the cloud: records every message it sees."""

    def __init__(
        self,
        port: int,
        *,
        topic: str = "batteries/#",
        persistent_id: str | None = None,
        username: str | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=persistent_id or f"cloud-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self.client.on_message = self._on_message
        if username:
            self.client.username_pw_set(username, f"{username}-pw")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if persistent_id else 0
        self.client.connect("127.0.0.1", port, clean_start=persistent_id is None, properties=props)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.loop_start()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain), time.monotonic()))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def seen(self, topic: str | None = None) -> list[tuple[str, bytes, bool, float]]:
        with self._lock:
            return [m for m in self.messages if topic is None or m[0] == topic]

    def json(self, topic: str) -> list[Any]:
        out = []
        for _t, payload, _r, _at in self.seen(topic):
            try:
                out.append(json.loads(payload))
            except ValueError:
                out.append(payload)
        return out

    def wait(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"not seen within {timeout}s; last messages: {self.seen()[-5:]}")

    def command(
        self,
        serial: str,
        action: str,
        spec: str = "both",
        *,
        command_id: str | None = None,
        expires_in: float = 60,
    ) -> str:
        command_id = command_id or str(uuid.uuid4())
        now = int(time.time() * 1000)
        payload = {
            "id": command_id,
            "action": action,
            "spec": spec,
            "issued_at": now,
            "expires_at": now + int(expires_in * 1000),
        }
        self.client.publish(f"batteries/{serial}/cmd", json.dumps(payload), qos=1).wait_for_publish(5)
        return command_id


@pytest.fixture
def prefix() -> str:
    """Serials of this test alone, so tests can share the session broker."""
    return f"T{uuid.uuid4().hex[:6].upper()}"


@pytest.fixture
def cloud_factory() -> Iterator[Callable[..., Cloud]]:
    made: list[Cloud] = []

    def make(port: int, **kwargs: Any) -> Cloud:
        cloud = Cloud(port, **kwargs)
        made.append(cloud)
        return cloud

    yield make
    for cloud in made:
        cloud.close()


def sim_settings(mqtt_url: str, protocol: int = 5, database_url: str | None = None) -> Settings:
    return Settings(mqtt_url=mqtt_url, mqtt_protocol=protocol, database_url=database_url, log_json=False)
