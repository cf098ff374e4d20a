"""The counts export: what `packfleet sim` says it sent equals what the broker delivered, per battery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from device_sim import counts
from tests import services
from tests.services import wait_for


def _distinct_readings(cloud) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    seen: dict[str, set[str]] = defaultdict(set)
    for topic, payload, _retained, _at in cloud.seen():
        if not topic.endswith("/telemetry"):
            continue
        body = json.loads(payload)
        for reading in body.get("readings", [body]):
            seen[topic.split("/")[1]].add(reading["ts"])
    return seen


def _acked(file: Path) -> int:
    return sum(b["acked"] for b in counts.read(file)["batteries"].values()) if file.exists() else 0


def test_quiesced_counts_match_the_readings_the_broker_delivered(
    own_mosquitto: services.Mosquitto, cloud_factory, prefix: str, tmp_path: Path
) -> None:
    # A persistent subscriber: it keeps its queue across the broker restart below.
    cloud = cloud_factory(own_mosquitto.port, topic="batteries/+/telemetry", persistent_id=f"c-{prefix}")
    file = tmp_path / "counts.json"
    env = {**os.environ, "PACKFLEET_MQTT_URL": own_mosquitto.url, "PACKFLEET_LOG_JSON": "true"}
    args = ["sim", "--batteries", "3", "--interval", "0.2", "--prefix", prefix, "--summary-every", "0.5"]
    sim = subprocess.Popen(
        [sys.executable, "-m", "packfleet", *args, "--counts-file", str(file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _acked(file) > 20)
        own_mosquitto.restart()  # readings in flight go back to the devices' buffers and are re-sent
        wait_for(lambda: all(b["connected"] for b in counts.read(file)["batteries"].values()), timeout=20)
        sim.send_signal(signal.SIGUSR1)
        wait_for(lambda: counts.read(file)["quiesced"], timeout=30)
        snapshot = counts.read(file)
        acked = {serial: b["acked"] for serial, b in snapshot["batteries"].items()}
        assert all(b["pending"] == 0 for b in snapshot["batteries"].values())
        wait_for(lambda: {s: len(r) for s, r in _distinct_readings(cloud).items()} == acked, timeout=10)
        sim.send_signal(signal.SIGUSR2)
        wait_for(lambda: not counts.read(file)["paused"])
        wait_for(lambda: _acked(file) > sum(acked.values()))
    finally:
        sim.terminate()
        sim.wait(20)
    assert sim.returncode == 0
