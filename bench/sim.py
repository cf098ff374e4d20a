"""Benchmark the device simulator: batteries connected, readings/s sustained, CPU and RSS.

For each fleet size, starts a mosquitto with the repo's settings on a spare port, runs
`python -m device_sim` as a process of its own (one MQTT connection per battery), waits until
every battery is connected, then for --duration seconds counts the readings a subscriber
receives and samples the simulator's CPU and RSS (and the broker's CPU). Ends with one JSON line.

    python bench/sim.py                                    # 1,000 and 10,000 batteries, 60 s each
    python bench/sim.py --batteries 200 --duration 10      # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.services import Mosquitto  # noqa: E402


class Counter:
    """A subscriber counting telemetry messages and the readings in them."""

    def __init__(self, port: int) -> None:
        self.messages = self.readings = 0
        self.online: set[str] = set()
        self.stamps: dict[str, set[str]] | None = None  # serial -> reading times, while tracking
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-counter", protocol=paho.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("batteries/+/telemetry", 1), ("batteries/+/status", 1)]
        )
        self.client.reconnect_delay_set(0.1, 1)
        # A persistent session, so the broker keeps what arrives while this counter reconnects
        # after an --outage (mosquitto saves sessions on SIGTERM).
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        if msg.topic.endswith("/telemetry"):
            self.messages += 1
            self.readings += max(1, msg.payload.count(b'"ts"'))
            if self.stamps is not None:
                body = json.loads(msg.payload)
                serial = msg.topic.split("/")[1]
                for reading in body.get("readings", [body]):
                    self.stamps.setdefault(serial, set()).add(reading["ts"])
        elif b'"online": true' in msg.payload:
            self.online.add(msg.topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _outage(broker: Mosquitto, counter: Counter, *, batteries: int, interval: float, seconds: float) -> dict:
    """Stop the broker for `seconds`, start it again, and time the fleet's return and its backlog."""
    counter.stamps = {}
    time.sleep(2 * interval)  # readings from before the outage too, so a hole at its edge shows
    counter.online.clear()
    before = counter.readings
    broker.stop()
    down_at = time.monotonic()
    time.sleep(seconds)
    broker.start()
    up_at = time.monotonic()
    while len(counter.online) < batteries and time.monotonic() - up_at < 300:
        time.sleep(0.2)
    back_s = time.monotonic() - up_at
    time.sleep(2 * interval)  # the backlogs drain
    span = time.monotonic() - down_at
    stamps, counter.stamps = counter.stamps, None
    holes = 0
    for serial_stamps in stamps.values():
        times = sorted(datetime.fromisoformat(ts).timestamp() for ts in serial_stamps)
        holes += sum(1 for a, b in zip(times, times[1:], strict=False) if b - a > 1.5 * interval)
    return {
        "outage_s": seconds,
        "back_online": len(counter.online),
        "all_back_s": round(back_s, 1),
        # readings due from the outage's start until now, and those received (held ones included)
        "readings_due": round(span * batteries / interval),
        "readings_received": counter.readings - before,
        # a hole: two readings of one battery further apart than 1.5 intervals (a lost reading)
        "holes": holes,
        "batteries_tracked": len(stamps),
    }


def bench(
    batteries: int,
    *,
    duration: float,
    interval: float,
    protocol: int,
    faults: str,
    multiplexed: int,
    outage: float,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto").start()
        counter = Counter(broker.port)
        env = {**os.environ, "PACKFLEET_MQTT_URL": broker.url, "PACKFLEET_LOG_JSON": "true"}
        env.pop("PACKFLEET_DATABASE_URL", None)  # the simulator needs no database for this
        if protocol == 3:
            env["PACKFLEET_MQTT_PROTOCOL"] = "3"
        cmd = [sys.executable, "-m", "device_sim", "--batteries", str(batteries), "--interval", str(interval)]
        cmd += ["--prefix", "BENCH", "--seed", "1", "--multiplexed", str(multiplexed)]
        cmd += ["--faults", faults] if faults else []
        started = time.monotonic()
        sim = subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        connected: dict = {}
        log_tail: list[str] = []

        def read_log() -> None:
            assert sim.stderr is not None
            for line in sim.stderr:
                log_tail[:] = [*log_tail[-20:], line]
                if '"msg": "devices connected' in line:
                    connected.update(json.loads(line))

        reader = threading.Thread(target=read_log, daemon=True)
        reader.start()
        try:
            while not connected:
                if sim.poll() is not None:
                    raise RuntimeError("the simulator exited:\n" + "".join(log_tail))
                if time.monotonic() - started > 300:
                    raise RuntimeError("devices did not connect within 300 s")
                time.sleep(0.2)
            connect_s = time.monotonic() - started
            time.sleep(min(interval, 10))  # one full interval, so every battery is in its rhythm
            proc, broker_proc = psutil.Process(sim.pid), psutil.Process(broker.proc.pid)  # type: ignore[union-attr]
            cpu0, bcpu0, t0 = _cpu(proc), _cpu(broker_proc), time.monotonic()
            readings0, messages0 = counter.readings, counter.messages
            rss_max = 0
            while time.monotonic() - t0 < duration:
                rss_max = max(rss_max, proc.memory_info().rss)
                time.sleep(0.5)
            elapsed = time.monotonic() - t0
            result = {
                "batteries": batteries,
                "mqtt_connections": connected.get("connections"),
                "connected": connected.get("connected"),
                "online_statuses_seen": len(counter.online),
                "connect_s": round(connect_s, 1),
                "interval_s": interval,
                "duration_s": round(elapsed, 1),
                "readings_per_s": round((counter.readings - readings0) / elapsed, 1),
                "messages_per_s": round((counter.messages - messages0) / elapsed, 1),
                "expected_per_s": round(batteries / interval, 1),
                "sim_cpu_pct": round(100 * (_cpu(proc) - cpu0) / elapsed, 1),
                "sim_rss_mb": round(rss_max / 2**20, 1),
                "broker_cpu_pct": round(100 * (_cpu(broker_proc) - bcpu0) / elapsed, 1),
            }
            if outage > 0:
                result["outage"] = _outage(
                    broker, counter, batteries=batteries, interval=interval, seconds=outage
                )
        finally:
            sim.send_signal(signal.SIGINT)
            try:
                sim.wait(60)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
            counter.close()
            broker.stop()
        print(json.dumps(result), file=sys.stderr, flush=True)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batteries", default="1000,10000", help="comma-separated fleet sizes")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured per size")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between one battery's readings")
    parser.add_argument("--protocol", type=int, choices=(3, 5), default=5)
    parser.add_argument("--faults", default="", help="a --faults spec for the simulator")
    parser.add_argument(
        "--outage", type=float, default=0.0, help="then stop the broker this long and time the recovery"
    )
    parser.add_argument(
        "--multiplexed", type=int, default=0, help="load-test mode: batteries share this many connections"
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.batteries.split(",")]
    results = [
        bench(
            n,
            duration=args.duration,
            interval=args.interval,
            protocol=args.protocol,
            faults=args.faults,
            multiplexed=args.multiplexed,
            outage=args.outage,
        )
        for n in sizes
    ]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(json.dumps({"bench": "sim", "cpus": os.cpu_count(), "nofile": [soft, hard], "runs": results}))


if __name__ == "__main__":
    main()
