"""Ingest throughput, latency and memory against a real Mosquitto and PostgreSQL on this machine.

    python bench/ingest.py                        # 200,000 readings from 10,000 batteries, QoS 1
    python bench/ingest.py --readings 50000 --batteries 2000

It starts its own mosquitto (the project's settings) and its own database, then measures, in one run:
  1. bare subscriber: a paho QoS 1 subscriber that only counts (the broker-and-client ceiling);
  2. ingest: `python -m ingest` as its own process; readings per second stored, from the first
     publish to the last commit, and the worker's peak RSS;
  3. latency: the same worker fed at half the rate of (2); publish time → insert time, p50/p99;
  4. raw COPY of the same rows into a table shaped like telemetry (the database ceiling);
  5. parse cost per message (the contract models) next to plain `json.loads`.
Publishers are separate processes. The last line printed is one JSON object with the figures.
Latency is measured to the batch's INSERT statement (telemetry.ingested_at); the commit follows
within that batch's flush, whose p99 the worker's metrics report (flush_p99_ms).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and its name would hide the
# `ingest` package: look in the repository instead.
sys.path[:] = [str(REPO), *[p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]]

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from ingest.client import IngestClient  # noqa: E402
from tests import services  # noqa: E402


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- roles run as their own processes ------------------------------------------------------------


def publish(port: int, serials: list[str], count: int, rate: float | None, qos: int) -> dict[str, Any]:
    """Publish `count` readings round-robin over `serials`; ts is the publish time (epoch ms).

    One thread: without paho's network thread, publish() writes straight to the socket and
    loop() reads the PUBACKs, so publisher and network thread do not take turns on the GIL.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = 0

    def on_publish(*_a: Any) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    while not client.is_connected():
        client.loop(0.1)
    topics = [f"batteries/{s}/telemetry" for s in serials]
    last_ts = [0] * len(serials)
    started = time.time()
    for n in range(count):
        b = n % len(serials)
        ts = max(int(time.time() * 1000), last_ts[b] + 1)  # unique per battery even at high rates
        last_ts[b] = ts
        payload = (
            f'{{"ts":{ts},"voltage":{48 + n % 7}.5,"current":{n % 40 - 20}.25,'
            f'"soc":{n % 100},"temperature":31.5}}'
        )
        client.publish(topics[b], payload, qos=qos)
        if rate is not None:
            ahead = started + (n + 1) / rate - time.time()
            if ahead > 0:
                client.loop(ahead)
        elif n % 64 == 0:
            client.loop(0)
    target = count if qos else 0
    deadline = time.time() + 300
    while acked < target and time.time() < deadline:
        client.loop(0.05)
    finished = time.time()
    client.disconnect()
    return {"started": started, "finished": finished, "acked": acked}


def bare_subscribe(port: int, count: int, ready: Path, tuned: bool) -> dict[str, Any]:
    """Count messages on the telemetry topics with a QoS 1 paho subscriber that does nothing else.

    Plain paho (auto-ack), or with `tuned` the worker's own client (ingest/client.py, PUBACKs per
    500). Its session is persistent: with count 0 it only subscribes and leaves, so that a later
    run drains what was published meanwhile (the backlog ceiling); count -1 forgets the session.
    """
    client_id = "bench-bare-tuned" if tuned else "bench-bare"
    got = 0
    first = last = 0.0
    done = threading.Event()

    def counted() -> None:
        nonlocal got, first, last
        got += 1
        if got == 1:
            first = time.time()
        if got >= count:
            last = time.time()
            done.set()

    if count < 0:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", port, clean_start=True)
        client.disconnect()
        return {"received": 0}

    def on_subscribe(*_a: Any) -> None:
        ready.write_text("ok")
        if count == 0:
            done.set()

    if tuned:
        client = IngestClient(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        unacked: list[int] = []

        def deliver(_topic: bytes, _payload: bytes, mid: int, _qos: int, _retain: bool) -> None:
            unacked.append(mid)
            if len(unacked) >= 500 or got + 1 >= count:
                client.ack_many(unacked)
                unacked.clear()
            counted()

        client.deliver = deliver
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.on_message = lambda *_a: counted()
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *_a: c.subscribe("batteries/+/telemetry", qos=1)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 5000
    connected = time.time()
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    done.wait(600)
    client.loop_stop()
    client.disconnect()
    return {"received": got, "connected": connected, "first": first, "last": last}


# --- orchestration -------------------------------------------------------------------------------


def run_role(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=REPO)


def role_result(proc: subprocess.Popen[str], timeout: float = 900) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args} exited {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def provision(url: str, batteries: int) -> list[str]:
    serials = [f"BENCH{i:06d}" for i in range(batteries)]
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur, cur.copy("COPY batteries (serial_number) FROM STDIN") as copy:
            for serial in serials:
                copy.write_row((serial,))
        conn.commit()
    return serials


def metric(port: int, name: str) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    values = {
        line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line and line[0] != "#"
    }
    return values.get(name)


def histogram_quantile(port: int, name: str, q: float) -> float | None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for bound, cumulative in sorted(buckets):
        if cumulative >= q * total:
            return bound
    return None


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class IngestProcess:
    def __init__(self, url: str, broker: services.Mosquitto, workdir: Path, opts: argparse.Namespace) -> None:
        self.metrics_port = services.free_port()
        env = {
            **os.environ,
            "PACKFLEET_DATABASE_URL": url,
            "PACKFLEET_MQTT_URL": broker.url,
            "PACKFLEET_METRICS_PORT": str(self.metrics_port),
            "PACKFLEET_INGEST_CLIENT_ID": f"bench-ingest-{os.getpid()}",
            "PACKFLEET_INGEST_BATCH_ROWS": str(opts.batch_rows),
            "PACKFLEET_INGEST_BATCH_MS": str(opts.batch_ms),
            "PACKFLEET_LOG_LEVEL": "INFO",
            "PACKFLEET_LOG_JSON": "true",
        }
        self.log_path = workdir / "ingest.log"
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest"], env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT
        )
        # Under load, with a backlog flooding in, the metrics endpoint can answer slowly.
        deadline = time.monotonic() + 120
        while metric(self.metrics_port, "ingest_mqtt_connected") != 1.0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                code = self.proc.poll()
                self.stop()
                tail = self.log_path.read_text()[-4000:]
                raise RuntimeError(f"ingest worker did not start (exit {code}):\n{tail}")
            time.sleep(0.05)

    def connected_at(self) -> float:
        """When the worker last connected, from its log (its metrics answer late under load)."""
        self.log.flush()
        stamps = [
            json.loads(line)["ts"]
            for line in (self.log_path.read_text().splitlines())
            if '"MQTT connected' in line
        ]
        return datetime.fromisoformat(stamps[-1]).timestamp()

    def stored(self) -> float:
        return metric(self.metrics_port, "ingest_readings_stored_total") or 0.0

    def wait_stored(self, target: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.stored() < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.stored():.0f} of {target:.0f} readings stored in {timeout}s")
            time.sleep(0.1)

    def stop(self) -> float:
        if self.proc.poll() is not None:
            self.log.close()
            return float("nan")
        rss = peak_rss_mib(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return rss


def bench_bare(
    broker: services.Mosquitto,
    opts: argparse.Namespace,
    work: Path,
    *,
    tuned: bool = False,
    live: bool = True,
) -> tuple[float | None, float]:
    """Readings per second a bare subscriber takes: live (publisher competing), then a backlog."""
    ready = work / "bare.ready"

    def bare(count: int) -> subprocess.Popen[str]:
        ready.unlink(missing_ok=True)
        args = ["--role", "bare", "--port", str(broker.port), "--count", str(count), "--ready", str(ready)]
        return run_role(args + (["--tuned"] if tuned else []))

    live_rate = None
    if live:
        sub = bare(opts.readings)
        while not ready.exists():
            time.sleep(0.05)
        published = publish_all(broker, work, opts.readings, None, opts)
        live_rate = opts.readings / (role_result(sub)["last"] - published["started"])
    else:
        role_result(bare(0))  # only create the session
    # Its session stays subscribed while it is away: publish, then let it drain alone.
    publish_all(broker, work, opts.readings, None, opts)
    drained = role_result(bare(opts.readings))
    backlog = opts.readings / (drained["last"] - drained["connected"])
    role_result(bare(-1))  # drop the session, or it would queue every later phase's messages
    return live_rate, backlog


def publish_all(
    broker: services.Mosquitto, work: Path, count: int, rate: float | None, opts: argparse.Namespace
) -> dict[str, Any]:
    """Run the publisher processes (each with its share of batteries and readings) to the end."""
    n = opts.publishers
    procs = []
    for part in range(n):
        args = ["--role", "publish", "--port", str(broker.port), "--serials-file", str(work / "serials.json")]
        args += [
            "--count",
            str(count // n + (part < count % n)),
            "--qos",
            str(opts.qos),
            "--part",
            f"{part}/{n}",
        ]
        procs.append(run_role(args + (["--rate", str(rate / n)] if rate else [])))
    results = [role_result(p) for p in procs]
    return {"started": min(r["started"] for r in results), "finished": max(r["finished"] for r in results)}


def bench_copy(url: str, serials: list[str], count: int) -> float:
    """Rows per second of a raw COPY into a table shaped like telemetry (text prepared beforehand)."""
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM batteries ORDER BY id LIMIT %s", (len(serials),))]
        base = datetime.now(UTC) - timedelta(days=1)
        lines = "".join(
            f"{ids[n % len(ids)]}\t{(base + timedelta(milliseconds=n)).isoformat()}"
            f"\t48.5\t1.25\t{n % 100}\t31.5\t\\N\t\\N\n"
            for n in range(count)
        ).encode()
        conn.execute("CREATE TABLE copy_ceiling (LIKE telemetry INCLUDING DEFAULTS INCLUDING INDEXES)")
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY copy_ceiling (battery_id, ts, voltage, current, soc, temperature, lat, lon) FROM STDIN"
            ) as copy,
        ):
            copy.write(lines)
        conn.commit()
        return count / (time.perf_counter() - started)


def bench_parse(count: int = 20_000) -> dict[str, float]:
    from ingest.parse import parse

    payloads = [
        (
            f'{{"ts":{1_700_000_000_000 + n},"voltage":48.5,"current":-3.25,'
            f'"soc":{n % 100},"temperature":31.5}}'
        ).encode()
        for n in range(count)
    ]
    topic = "batteries/BENCH000001/telemetry"
    started = time.perf_counter()
    for p in payloads:
        parse(topic, p)
    parse_us = (time.perf_counter() - started) / count * 1e6
    started = time.perf_counter()
    for p in payloads:
        json.loads(p)
    loads_us = (time.perf_counter() - started) / count * 1e6
    return {"parse_us_per_message": round(parse_us, 2), "json_loads_us_per_message": round(loads_us, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--batteries", type=int, default=10_000)
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1))
    parser.add_argument("--batch-rows", type=int, default=2000)
    parser.add_argument("--batch-ms", type=int, default=200)
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="length of the half-rate run")
    parser.add_argument(
        "--publishers", type=int, default=1, help="publisher processes (1: as the issue says)"
    )
    parser.add_argument("--skip-ceilings", action="store_true", help="measure the worker only")
    # internal: the roles this script plays as its own processes
    parser.add_argument("--role", choices=("publish", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--serials-file", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", default="0/1", help=argparse.SUPPRESS)
    opts = parser.parse_args()

    if opts.role == "publish":
        part, parts = (int(x) for x in opts.part.split("/"))
        serials = json.loads(Path(opts.serials_file).read_text())[part::parts]
        print(json.dumps(publish(opts.port, serials, opts.count, opts.rate, opts.qos)))
        return
    if opts.role == "bare":
        print(json.dumps(bare_subscribe(opts.port, opts.count, Path(opts.ready), opts.tuned)))
        return

    result: dict[str, Any] = {
        "readings": opts.readings,
        "batteries": opts.batteries,
        "qos": opts.qos,
        "batch_rows": opts.batch_rows,
        "batch_ms": opts.batch_ms,
        "publishers": opts.publishers,
        "cpus": os.cpu_count(),
    }
    admin = services.admin_url()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        broker = services.Mosquitto(work / "mosquitto").start()
        url = services.create_database(admin)
        try:
            serials = provision(url, opts.batteries)
            (work / "serials.json").write_text(json.dumps(serials))
            result.update(bench_parse())

            if not opts.skip_ceilings:
                log("bare paho subscriber (ceiling)")
                live, backlog = bench_bare(broker, opts, work)
                assert live is not None
                result["bare_subscriber_per_s"] = round(live)
                result["bare_backlog_per_s"] = round(backlog)
                log(f"  live {live:.0f}/s, backlog {backlog:.0f}/s")
                log("bare subscriber on the worker's tuned paho client (ingest/client.py)")
                _, tuned = bench_bare(broker, opts, work, tuned=True, live=False)
                result["bare_tuned_backlog_per_s"] = round(tuned)
                log(f"  backlog {tuned:.0f}/s")

            log(f"ingest: {opts.readings} readings from {opts.batteries} batteries")
            worker = IngestProcess(url, broker, work, opts)
            peak_rss = 0.0
            try:
                published = publish_all(broker, work, opts.readings, None, opts)
                worker.wait_stored(opts.readings, timeout=900)
                with psycopg.connect(url) as conn:
                    last_commit = conn.execute(
                        "SELECT extract(epoch FROM max(ingested_at)) FROM telemetry"
                    ).fetchone()
                assert last_commit is not None
                elapsed = float(last_commit[0]) - published["started"]
                rate = opts.readings / elapsed
                result["ingest_per_s"] = round(rate)
                result["publish_per_s"] = round(
                    opts.readings / (published["finished"] - published["started"])
                )
                log(f"  stored {result['ingest_per_s']}/s (publisher {result['publish_per_s']}/s)")

                log("ingest: a backlog published while the worker was away, drained alone")
                peak_rss = worker.stop()
                publish_all(broker, work, opts.readings, None, opts)
                worker = IngestProcess(url, broker, work, opts)  # the same client id: the same session
                worker.wait_stored(opts.readings, timeout=900)
                with psycopg.connect(url) as conn:
                    row = conn.execute(
                        "SELECT extract(epoch FROM max(ingested_at)) FROM telemetry"
                    ).fetchone()
                assert row is not None
                result["ingest_backlog_per_s"] = round(
                    opts.readings / (float(row[0]) - worker.connected_at())
                )
                log(f"  {result['ingest_backlog_per_s']}/s")

                half = rate / 2
                count = max(int(half * opts.latency_seconds), 100)
                log(f"latency at half rate: {half:.0f}/s for {count} readings")
                before = worker.stored()
                latency_pub = publish_all(broker, work, count, half, opts)
                worker.wait_stored(before + count, timeout=300)
                with psycopg.connect(url) as conn:
                    row = conn.execute(
                        """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lat),
                                  percentile_cont(0.99) WITHIN GROUP (ORDER BY lat), max(lat)
                           FROM (SELECT extract(epoch FROM ingested_at - ts) * 1000 AS lat FROM telemetry
                                 WHERE ts >= to_timestamp(%s)) l""",
                        (latency_pub["started"],),
                    ).fetchone()
                assert row is not None
                result["latency_rate_per_s"] = round(half)
                result["latency_p50_ms"] = round(float(row[0]), 1)
                result["latency_p99_ms"] = round(float(row[1]), 1)
                result["latency_max_ms"] = round(float(row[2]), 1)
                flush_p99 = histogram_quantile(worker.metrics_port, "ingest_flush_seconds", 0.99)
                result["flush_p99_ms_bucket"] = None if flush_p99 is None else flush_p99 * 1000
                result["duplicates"] = metric(worker.metrics_port, "ingest_readings_duplicate_total")
            finally:
                result["worker_peak_rss_mib"] = round(max(worker.stop(), peak_rss), 1)

            if not opts.skip_ceilings:
                log("raw COPY (database ceiling)")
                result["raw_copy_per_s"] = round(bench_copy(url, serials, opts.readings))
                result["ingest_vs_bare_live"] = round(
                    result["ingest_per_s"] / result["bare_subscriber_per_s"], 3
                )
                result["ingest_vs_tuned_bare_backlog"] = round(
                    result["ingest_backlog_per_s"] / result["bare_tuned_backlog_per_s"], 3
                )
                result["ingest_vs_bare_backlog"] = round(
                    result["ingest_backlog_per_s"] / result["bare_backlog_per_s"], 3
                )
        finally:
            broker.stop()
            services.drop_database(admin, url)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
