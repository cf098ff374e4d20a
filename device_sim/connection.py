"""One simulated MQTT connection's life: connect through the gate, reconnect with backoff.

A battery with its own connection (`device.Device`) and a connection shared by many
(`multiplex.SharedConnection`) differ only in how the client is set up and in what happens
once it is up or down; those are the hooks below.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho

if TYPE_CHECKING:
    from device_sim.device import Link

log = logging.getLogger(__name__)


class Connection(abc.ABC):
    """Connects `client` over `link`, and after a failure or a drop schedules a reconnect."""

    refused = "broker refused the connection"  # logged when the CONNACK says no
    log = log  # a subclass logs as its own module

    def __init__(self, *, link: Link, rng: random.Random) -> None:
        self.link = link
        self.client: paho.Client | None = None
        self._backoff_rng = rng
        self._retry_s = 1.0
        self._reconnect: asyncio.TimerHandle | None = None
        self._offline_until = 0.0

    # Hooks each kind of connection defines.

    @abc.abstractmethod
    def _log_extra(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _new_client(self) -> paho.Client:
        """A client set up for this connection (credentials, will, limits); callbacks come later."""
        ...

    @abc.abstractmethod
    def _up(self, client: paho.Client) -> None:
        """The broker accepted: subscribe and announce."""
        ...

    @abc.abstractmethod
    def _down(self) -> None:
        """The connection dropped."""
        ...

    @abc.abstractmethod
    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None: ...

    @abc.abstractmethod
    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None: ...

    # The connection's life.

    async def connect(self) -> bool:
        """Connect once; True when the broker accepted (on_connect ran), False otherwise."""
        link = self.link
        client = self._new_client()
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
            self.log.debug("connect failed", extra={**self._log_extra(), "error": repr(exc)})
            self._drop_client()
            self._schedule_reconnect()
            return False

    def _on_connect(self, client: paho.Client, accepted: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if client is not self.client:
            return
        ok = not reason.is_failure
        if not accepted.done():
            accepted.set_result(ok)
        if not ok:
            self.link.stats.connect_failures += 1
            self.log.warning(self.refused, extra={**self._log_extra(), "reason": str(reason)})
            client.disconnect()
            return
        if self.link.stopping:
            client.disconnect()
            return
        self._retry_s = 1.0
        self._up(client)

    def _on_disconnect(
        self, client: paho.Client, accepted: Any, _flags: Any, _reason: Any, _props: Any
    ) -> None:
        if client is not self.client:
            return
        if not accepted.done():
            accepted.set_result(False)
        self.link.driver.forget(client)
        self._down()
        if not self.link.stopping:
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self.link.stopping or self._reconnect is not None:
            return
        delay = max(self._retry_s * self._backoff_rng.uniform(0.5, 1.5), self._offline_until - time.time())
        self._retry_s = min(self._retry_s * 2, 30.0)
        self._reconnect = self.link.driver.loop.call_later(delay, self._reconnect_now)

    def _reconnect_now(self) -> None:
        self._reconnect = None
        if not self.link.stopping:
            self._drop_client()
            asyncio.ensure_future(self.connect())

    def _cancel_reconnect(self) -> None:
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None

    def _drop_client(self) -> None:
        if self.client is not None:
            self.link.driver.forget(self.client)
            if self.client.socket() is not None:
                self.client.on_disconnect = None
                self.client.disconnect()
        self.client = None
