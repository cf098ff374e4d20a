"""Messages no device should send, for the MQTT fuzzer: each with the topic it goes to.

Deterministic for a seed. Every message here is invalid, so each must end as one dead letter.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator

Message = tuple[str, bytes]

ODD_SERIALS = (
    "bad serial",  # a space
    "ü-umlaut",  # not ASCII
    "x" * 65,  # longer than the contract's 64
    "semi;colon",
    "quote'\"",
    "dot.dot",
    "%00nul",
    "emoji🔋",
)
# Control characters in a topic are a malformed packet to Mosquitto: it drops the publisher and
# nothing reaches ingest (the fuzzer checks that apart).
REFUSED_BY_BROKER = "batteries/tab\tserial/telemetry"


def _reading(ts: object = None, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "ts": ts if ts is not None else int(time.time() * 1000),
        "voltage": 48.2,
        "current": 3.5,
        "soc": 77.0,
    }
    base.update(fields)
    return base


def _nested(depth: int) -> bytes:
    return b'{"ts": ' + b"[" * depth + b"]" * depth + b"}"


def invalid_messages(serial: str, unknown_serial: str, rng: random.Random) -> Iterator[Message]:
    """One round of bad messages for a provisioned `serial` (and one the fleet does not have)."""
    telemetry = f"batteries/{serial}/telemetry"
    status = f"batteries/{serial}/status"
    good = json.dumps(_reading()).encode()
    # malformed
    yield telemetry, good[: rng.randrange(1, len(good) - 1)]
    yield telemetry, b"{not json"
    yield telemetry, b""
    yield telemetry, b"null"
    yield telemetry, b"[1, 2, 3]"
    yield telemetry, b'"a string"'
    yield status, b"{"
    # oversized: over the contract's 256 KiB, under the broker's packet limit
    yield telemetry, json.dumps(_reading(pad="x" * 270_000)).encode()
    yield telemetry, json.dumps({"readings": [_reading(ts=i) for i in range(1001)]}).encode()  # > 1000
    # wrongly typed
    yield telemetry, json.dumps(_reading(voltage="48.2V")).encode()
    yield telemetry, json.dumps(_reading(soc=True)).encode()
    yield telemetry, json.dumps(_reading(ts=[2026, 1, 1])).encode()
    yield telemetry, json.dumps(_reading(current={"value": 1})).encode()
    yield telemetry, json.dumps({"readings": "all of them"}).encode()
    yield telemetry, json.dumps({"readings": [1, 2]}).encode()
    yield status, json.dumps({"online": "yes", "enabled": 1}).encode()
    yield status, json.dumps({"online": True, "spec": "sideways"}).encode()
    # deeply nested
    yield telemetry, _nested(rng.choice((100, 10_000, 100_000)))
    yield status, _nested(5_000)
    # NaN and Infinity (JSON has neither; Python's json module would read them)
    yield telemetry, b'{"ts": 1700000000000, "voltage": NaN, "current": 1.0, "soc": 50.0}'
    yield telemetry, b'{"ts": 1700000000000, "voltage": 48.0, "current": Infinity, "soc": 50.0}'
    yield telemetry, b'{"ts": 1700000000000, "voltage": 48.0, "current": 1.0, "soc": -Infinity}'
    yield telemetry, b'{"ts": 1700000000000, "voltage": 1e999, "current": 1.0, "soc": 50.0}'
    # out of range
    yield telemetry, json.dumps(_reading(voltage=-1)).encode()
    yield telemetry, json.dumps(_reading(soc=100.5)).encode()
    yield telemetry, json.dumps(_reading(temperature=151)).encode()
    yield telemetry, json.dumps(_reading(lat=91.0, lon=0.0)).encode()
    yield telemetry, json.dumps(_reading(lat=10.0)).encode()  # lat without lon
    # non-UTF-8
    yield telemetry, b'{"ts": 1700000000000, "voltage": 48.0, "current": 1.0, "soc": 50.0, "x": "\xff\xfe"}'
    yield telemetry, '{"ts": 1}'.encode("utf-16")
    yield status, b"\xc3\x28"
    # far-future and far-past times
    yield telemetry, json.dumps(_reading(ts="9999-12-31T23:59:59Z")).encode()
    yield telemetry, json.dumps(_reading(ts=int(time.time() * 1000) + 3_600_000)).encode()
    yield telemetry, json.dumps(_reading(ts=10**20)).encode()
    yield telemetry, json.dumps(_reading(ts=-(10**15))).encode()
    yield telemetry, json.dumps(_reading(ts=0)).encode()  # a device whose clock was reset: 1970
    yield telemetry, json.dumps(_reading(ts="1999-12-31T23:59:59Z")).encode()
    yield telemetry, json.dumps(_reading(ts="0000-01-01T00:00:00Z")).encode()
    yield telemetry, json.dumps(_reading(ts="2026-13-45T99:99:99Z")).encode()
    yield telemetry, json.dumps(_reading(ts="yesterday")).encode()
    # topics with odd characters, and a battery that is not provisioned
    for odd in ODD_SERIALS:
        yield f"batteries/{odd}/telemetry", good
    yield f"batteries/{unknown_serial}/telemetry", good
    # random bytes
    for _ in range(5):
        yield telemetry, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
