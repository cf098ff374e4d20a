"""The tuned paho client's PUBLISH decoding agrees with paho's own, and refuses malformed packets."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.client import MalformedPublish, ReadAheadSocket, decode_publish


def _properties(expiry: int | None, content_type: str | None, user: list[tuple[str, str]]) -> bytes:
    props = Properties(PacketTypes.PUBLISH)
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if content_type is not None:
        props.ContentType = content_type
    if user:
        props.UserProperty = user
    return bytes(props.pack())


# MQTT strings may not hold U+0000 (paho refuses to decode such properties).
mqtt_text = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))


@settings(max_examples=300, deadline=None)
@given(
    topic=st.text(min_size=1, max_size=80),
    payload=st.binary(max_size=2000),
    qos=st.sampled_from([0, 1]),
    mid=st.integers(min_value=1, max_value=65535),
    v5=st.booleans(),
    expiry=st.none() | st.integers(min_value=0, max_value=2**32 - 1),
    content_type=st.none() | mqtt_text,
    user=st.lists(st.tuples(mqtt_text, mqtt_text), max_size=3),
)
def test_decoding_agrees_with_paho(
    topic: str,
    payload: bytes,
    qos: int,
    mid: int,
    v5: bool,
    expiry: int | None,
    content_type: str | None,
    user: list[tuple[str, str]],
) -> None:
    raw_topic = topic.encode()
    body = struct.pack("!H", len(raw_topic)) + raw_topic
    if qos:
        body += struct.pack("!H", mid)
    if v5:
        body += _properties(expiry, content_type, user)
    body += payload
    header = 0x30 | (qos << 1)
    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    theirs = _packet.decode_publish(header, bytearray(body), protocol)
    assert decode_publish(bytearray(body), qos, v5=v5) == (theirs.topic, theirs.mid, theirs.payload)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=40), qos=st.sampled_from([0, 1]), v5=st.booleans())
def test_malformed_packets_raise_only_malformed_publish(body: bytes, qos: int, v5: bool) -> None:
    try:
        topic, _mid, payload = decode_publish(body, qos, v5=v5)
    except MalformedPublish:
        return
    assert len(topic) + len(payload) <= len(body)


class _Chunks:
    """A socket that hands out fixed chunks, then would block."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def recv(self, _size: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop(0)

    def fileno(self) -> int:
        return 42


def test_read_ahead_serves_small_reads_from_one_large_one() -> None:
    sock = ReadAheadSocket(_Chunks([b"abcdefgh", b"XY"]))
    assert sock.recv(1) == b"a"
    assert sock.pending() == 7
    assert sock.recv(3) == b"bcd"
    assert sock.recv(10) == b"efgh"  # never more than is buffered; paho asks again for the rest
    assert sock.pending() == 0
    assert sock.recv(5) == b"XY"
    try:
        sock.recv(1)
    except BlockingIOError:
        pass
    else:
        raise AssertionError("an empty socket must say it would block")
    assert sock.fileno() == 42
