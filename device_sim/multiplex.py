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

import logging
import random
import socket
import time
from typing import Any

import paho.mqtt.client as paho

from device_sim.connection import Connection
from device_sim.device import Device, Link
from schemas import topics

log = logging.getLogger(__name__)

SUBSCRIBE_CHUNK = 500  # topics per SUBSCRIBE packet: ~20 KB, well under the broker's packet limit


class SharedConnection(Connection):
    """One MQTT connection carrying the topics of several batteries."""

    log = log

    def __init__(self, *, name: str, devices: list[Device], link: Link, seed: int) -> None:
        self.name = name
        self.devices = devices
        super().__init__(link=link, rng=random.Random(seed))
        self.by_command_topic = {topics.command(d.serial): d for d in devices}
        self.mids: dict[int, Device] = {}  # message id -> the battery whose readings it carries
        for device in devices:
            device.shared = self

    def _log_extra(self) -> dict[str, Any]:
        return {"connection": self.name}

    def _new_client(self) -> paho.Client:
        link = self.link
        client = link.driver.new_client(
            client_id=self.name, protocol=link.protocol, username=link.username, password=link.password
        )
        # paho's default of 20 unacknowledged messages is one device's worth, not a hundred's.
        client.max_inflight_messages_set(1000)
        return client

    def _up(self, client: paho.Client) -> None:
        wanted = [(topic, 1) for topic in self.by_command_topic]
        for start in range(0, len(wanted), SUBSCRIBE_CHUNK):
            client.subscribe(wanted[start : start + SUBSCRIBE_CHUNK])
        for device in self.devices:
            device.attach(client)

    def _down(self) -> None:
        for device in self.devices:
            device.detach()
        self.mids.clear()

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        device = self.by_command_topic.get(message.topic)
        if device is not None:
            device.on_command(message.payload)

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, _reason: Any, _props: Any) -> None:
        device = self.mids.pop(mid, None)
        if device is not None:
            device.published(mid)

    def flap(self) -> None:
        """Drop the shared TCP connection without a DISCONNECT (every battery on it goes dark)."""
        if self.client is None or not isinstance(sock := self.client.socket(), socket.socket):
            return
        self.link.stats.flaps += 1
        self._offline_until = time.time() + self.devices[0].dice.offline_for()
        sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """After every battery on it has said it is going offline: disconnect cleanly."""
        self._cancel_reconnect()
        if self.client is not None and self.client.socket() is not None:
            self.client.disconnect()
