"""Many paho MQTT clients driven by one asyncio loop: no thread and no task per client.

paho's own network loop wants a thread per client, and aiomqtt adds a task and a queue per
client; neither is needed to hold thousands of connections. Here each client's socket is
registered with the event loop (paho's socket callbacks), its packets are read and written
when the socket is ready, and one timer runs every client's keepalive housekeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

KEEPALIVE_S = 60
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Driver:
    """Registers paho clients' sockets with one asyncio loop and runs their housekeeping."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, misc_every_s: float = 1.0) -> None:
        self.loop = loop
        self._thread = threading.get_ident()
        self._clients: set[paho.Client] = set()
        self._misc_every_s = misc_every_s
        self._misc_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._misc_task = self.loop.create_task(self._misc_loop(), name="mqtt-misc")

    async def close(self) -> None:
        if self._misc_task is not None:
            self._misc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc_task

    def new_client(
        self, *, client_id: str, protocol: int, username: str | None, password: str | None
    ) -> paho.Client:
        """A paho client whose socket this driver will watch once it connects."""
        version = paho.MQTTv5 if protocol == 5 else paho.MQTTv311
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=version,
            # A device keeps no broker session: on reconnect it re-subscribes, and commands it
            # missed are re-sent by control when it announces itself online.
            clean_session=None if version == paho.MQTTv5 else True,
            reconnect_on_failure=False,
        )
        if username:
            client.username_pw_set(username, password)
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    async def connect(self, client: paho.Client, host: str, port: int, *, protocol: int) -> None:
        """Open the socket and send CONNECT; the client's on_connect reports the CONNACK."""
        props = None
        if protocol == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
        # paho's TCP connect blocks: nothing on loopback (so do it here, without a thread hop per
        # device), but a network round trip to a remote broker (so do that on a worker thread).
        if host in _LOOPBACK:
            _connect_blocking(client, host, port, props)
        else:
            await self.loop.run_in_executor(None, _connect_blocking, client, host, port, props)

    def forget(self, client: paho.Client) -> None:
        self._clients.discard(client)

    # paho socket callbacks: may be called from the executor thread during connect().

    def _in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self._thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._watch, client, sock)

    def _watch(self, client: paho.Client, sock: socket.socket) -> None:
        if sock.fileno() < 0 or client.socket() is not sock:
            return  # closed before the loop got to it
        self._clients.add(client)
        self.loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._clients.discard(client)
        if sock.fileno() >= 0:
            self._in_loop(_unwatch, self.loop, sock)

    def _on_register_write(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._add_writer, client, sock)

    def _add_writer(self, client: paho.Client, sock: socket.socket) -> None:
        if sock.fileno() >= 0 and client.socket() is sock:
            self.loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        if sock.fileno() >= 0:
            self._in_loop(self.loop.remove_writer, sock)

    async def _misc_loop(self) -> None:
        # Keepalive pings and ping timeouts for every client; a few microseconds each.
        while True:
            await asyncio.sleep(self._misc_every_s)
            for client in list(self._clients):
                try:
                    client.loop_misc()
                except Exception:  # one broken client must not stop the others' keepalives
                    log.exception("mqtt housekeeping failed")


def _connect_blocking(client: paho.Client, host: str, port: int, props: Properties | None) -> None:
    client.connect(host, port, keepalive=KEEPALIVE_S, properties=props)


def _unwatch(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    if sock.fileno() >= 0:
        loop.remove_reader(sock)
        loop.remove_writer(sock)
