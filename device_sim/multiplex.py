"""Multiplexed mode, for load tests only: many simulated batteries over one MQTT connection.

One connection per battery is the real thing and what the simulator does by default; it is
bounded by open files (one socket per battery in this process and in the broker: about 19,700
under this machine's hard limit of 20,000). Beyond that, batteries can share connections. Their
telemetry, status, commands and acks are unchanged; what is lost is each battery's own client
identity, its per-serial ACL login and its will message (one connection has one will, so a
shared connection has none: a killed simulator leaves these batteries "online" in their
retained status until it comes back).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from typing import Any

import paho.mqtt.client as paho

from device_sim.device import Device, Link
from schemas import topics

log = logging.getLogger(__name__)

SUBSCRIBE_CHUNK = 500  # topics per SUBSCRIBE packet: ~20 KB, well under the broker's packet limit


class SharedConnection:
    """One MQTT connection carrying the topics of several batteries."""

    def __init__(self, *, name: str, devices: list[Device], link: Link, seed: int) -> None:
        self.name = name
        self.devices = devices
        self.link = link
        self.rng = random.Random(seed)
        self.by_command_topic = {topics.command(d.serial): d for d in devices}
        self.mids: dict[int, Device] = {}  # message id -> the battery whose readings it carries
        self.client: paho.Client | None = None
        self._retry_s = 1.0
        self._reconnect: asyncio.TimerHandle | None = None
        self._offline_until = 0.0
        for device in devices:
            device.shared = self

    async def connect(self) -> bool:
        link = self.link
        client = link.driver.new_client(
            client_id=self.name, protocol=link.protocol, username=link.username, password=link.password
        )
        # paho's default of 20 unacknowledged messages is one device's worth, not a hundred's.
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self.client = client
        accepted = link.driver.loop.create_future()
        client.user_data_set(accepted)
        try:
            async with link.connect_gate:
                await link.driver.connect(client, link.host, link.port, protocol=link.protocol)
                return await asyncio.wait_for(accepted, timeout=30)
        except (OSError, TimeoutError) as exc:
            link.stats.connect_failures += 1
            log.debug("connect failed", extra={"connection": self.name, "error": repr(exc)})
            self._drop_client()
            self._schedule_reconnect()
            return False

    def _on_connect(self, client: paho.Client, accepted: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if client is not self.client:
            return
        ok = not reason.is_failure
        if not accepted.done():
            accepted.set_result(ok)
        if not ok or self.link.stopping:
            if not ok:
                self.link.stats.connect_failures += 1
                log.warning(
                    "broker refused the connection", extra={"connection": self.name, "reason": str(reason)}
                )
            client.disconnect()
            return
        self._retry_s = 1.0
        wanted = [(topic, 1) for topic in self.by_command_topic]
        for start in range(0, len(wanted), SUBSCRIBE_CHUNK):
            client.subscribe(wanted[start : start + SUBSCRIBE_CHUNK])
        for device in self.devices:
            device.attach(client)

    def _on_disconnect(
        self, client: paho.Client, accepted: Any, _flags: Any, _reason: Any, _props: Any
    ) -> None:
        if client is not self.client:
            return
        if not accepted.done():
            accepted.set_result(False)
        self.link.driver.forget(client)
        for device in self.devices:
            device.detach()
        self.mids.clear()
        if not self.link.stopping:
            self._schedule_reconnect()

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        device = self.by_command_topic.get(message.topic)
        if device is not None:
            device.on_command(message.payload)

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, _reason: Any, _props: Any) -> None:
        device = self.mids.pop(mid, None)
        if device is not None:
            device.published(mid)

    def _schedule_reconnect(self) -> None:
        if self.link.stopping or self._reconnect is not None:
            return
        delay = max(self._retry_s * self.rng.uniform(0.5, 1.5), self._offline_until - time.time())
        self._retry_s = min(self._retry_s * 2, 30.0)
        self._reconnect = self.link.driver.loop.call_later(delay, self._reconnect_now)

    def _reconnect_now(self) -> None:
        self._reconnect = None
        if not self.link.stopping:
            self._drop_client()
            asyncio.ensure_future(self.connect())

    def _drop_client(self) -> None:
        if self.client is not None:
            self.link.driver.forget(self.client)
            if self.client.socket() is not None:
                self.client.on_disconnect = None
                self.client.disconnect()
        self.client = None

    def flap(self) -> None:
        """Drop the shared TCP connection without a DISCONNECT (every battery on it goes dark)."""
        if self.client is None or not isinstance(sock := self.client.socket(), socket.socket):
            return
        self.link.stats.flaps += 1
        self._offline_until = time.time() + self.devices[0].dice.offline_for()
        sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """After every battery on it has said it is going offline: disconnect cleanly."""
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        if self.client is not None and self.client.socket() is not None:
            self.client.disconnect()
