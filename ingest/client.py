"""A paho client tuned for a worker that receives a lot and publishes nothing.

Per-message Python work in the MQTT thread is what limits ingest, and most of it was paho's own:
measured with cProfile while draining a backlog, building an MQTT 5 `Properties` object for each
PUBLISH (which ingest never reads) took about a third of the thread's time, then come the
MQTTMessage with its threading.Condition, topic matching for callbacks, and three or more recv()
system calls plus a select() per packet. This subclass keeps paho's connection handling and
replaces those steps; it relies on paho 2.x internals (`_in_packet`, `_packet_read`), which is
why pyproject pins paho-mqtt below 3, and the tests drive it against a real Mosquitto.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes

PUBACK = PacketTypes.PUBACK << 4
_PUBACK = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id: success in 3.1.1 and 5
READ_AHEAD = 65536
PACKETS_PER_READ = 100

# topic (raw bytes), payload, packet id, QoS, retain flag
Deliver = Callable[[bytes, bytes, int, int, bool], None]


class MalformedPublish(ValueError):
    """A PUBLISH packet whose lengths do not add up."""


def decode_publish(packet: bytes | bytearray, qos: int, *, v5: bool) -> tuple[bytes, int, bytes]:
    """Topic, packet id and payload of a PUBLISH body (what follows the fixed header)."""
    try:
        size = (packet[0] << 8) | packet[1]
        pos = 2 + size
        if pos > len(packet):
            raise MalformedPublish("topic runs past the packet")
        view = memoryview(packet)
        topic = bytes(view[2:pos])
        mid = 0
        if qos:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        if v5:  # skip the properties: a variable byte integer length, then that many bytes
            length = 0
            for shift in (0, 7, 14, 21):
                byte = packet[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
            else:
                raise MalformedPublish("properties length longer than 4 bytes")
            pos += length
            if pos > len(packet):
                raise MalformedPublish("properties run past the packet")
    except IndexError as exc:
        raise MalformedPublish("packet too short") from exc
    return topic, mid, bytes(view[pos:])


class ReadAheadSocket:
    """A TCP socket whose small reads come from a 64 KiB read-ahead buffer.

    paho reads every packet with three or more `recv` calls (a byte of type, the length a byte
    at a time, then the body); from a buffer those are slices, not system calls. `pending()` is
    what paho already asks of TLS sockets, so that it does not wait in select() with data buffered.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._buf):
            data: bytes = self._sock.recv(READ_AHEAD)  # BlockingIOError when empty, b"" at EOF
            if len(data) <= size:
                return data
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = start + size
        return self._buf[start : self._pos]

    def pending(self) -> int:
        return max(len(self._buf) - self._pos, 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class IngestClient(paho.Client):
    """paho with a direct `deliver` hook for QoS 0/1 PUBLISH packets (manual ack only)."""

    deliver: Deliver | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        deliver = self.deliver
        if deliver is None or qos == 2 or not self._manual_ack:
            return super()._handle_publish()
        try:
            topic, mid, payload = decode_publish(
                self._in_packet["packet"], qos, v5=self._protocol == paho.MQTTv5
            )
        except MalformedPublish:
            return MQTTErrorCode.MQTT_ERR_PROTOCOL  # paho drops the connection and reconnects
        # QoS 1 is acknowledged later, by the writer, after its batch has committed.
        deliver(topic, payload, mid, qos, bool(header & 0x01))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages: all PUBACKs in one queued write and one wake-up of paho's
        thread (`Client.ack` per message costs about 4 µs here, this 0.3 µs)."""
        self._packet_queue(PUBACK, b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids]), 0, 0)

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        # No per-topic callbacks are registered: skip paho's matching and locks (3.9 µs → 0.4 µs).
        on_message = self.on_message
        if on_message is not None:
            on_message(self, self._userdata, message)

    def _create_socket(self) -> Any:
        return ReadAheadSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # paho reads one packet per select() unless its own messages are in flight; a worker
        # that only receives would pay a select() and a keepalive check for every message.
        for _ in range(PACKETS_PER_READ):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS
