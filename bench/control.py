"""Benchmark of the control path on the real PostgreSQL and a real Mosquitto.

1. Latency: N sequential `POST /api/batteries/{serial}/control` calls, each timed from the call
   until the command is `succeeded` in the database (devices answer `received` then `applied`).
2. Fan-out: one `POST /api/commands/bulk` disabling M batteries, timed until all are `succeeded`.

The API (`packfleet api`) and control (`python -m control`) run as their own processes; the
devices are lightweight paho-mqtt clients (each serves a slice of the batteries) speaking the
contract. The database is a fresh one on the server at --admin-url, the broker a mosquitto with
the project's mosquitto.conf on a spare port. The last line printed is one JSON object.

    python bench/control.py                      # 1000 sequential, fan-out to 5000
    python bench/control.py -n 100 -m 500        # a smaller run
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg.rows import dict_row

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.auth.tokens import issue_token  # noqa: E402
from packfleet.migrate import migrate  # noqa: E402
from tests.services import Mosquitto, free_port  # noqa: E402


def wait_port(port: int, timeout: float = 20, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answered on port {port}")


class Devices:
    """Batteries served by a few paho clients: each acks `received` then `applied` for its serials."""

    def __init__(self, port: int, serials: list[str], clients: int, *, nodelay: bool) -> None:
        self.clients: list[mqtt.Client] = []
        self.commands = 0
        self._lock = threading.Lock()
        per = max(1, -(-len(serials) // clients))
        for k in range(0, len(serials), per):
            chunk = serials[k : k + per]
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"bench-dev-{k}-{uuid.uuid4().hex[:6]}",
                protocol=mqtt.MQTTv5,
            )
            client.max_inflight_messages_set(1000)
            client.on_message = self._on_command
            client.connect("127.0.0.1", port)
            if nodelay:
                client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.loop_start()
            for j in range(0, len(chunk), 200):
                result, mid = client.subscribe([(f"batteries/{s}/cmd", 1) for s in chunk[j : j + 200]])
                assert result == mqtt.MQTT_ERR_SUCCESS
            self.clients.append(client)
        time.sleep(0.5)  # let the SUBACKs arrive

    def _on_command(self, client: mqtt.Client, _userdata: Any, msg: Any) -> None:
        command = json.loads(msg.payload)
        serial = msg.topic.split("/")[1]
        enabled = command["action"] == "enable"
        now = datetime.now(UTC).isoformat()
        for stage in ("received", "applied"):
            body = {"id": command["id"], "stage": stage, "ts": now}
            if stage == "applied":
                body["enabled"] = enabled
            client.publish(f"batteries/{serial}/cmd/ack", json.dumps(body), qos=1)
        with self._lock:
            self.commands += 1

    def close(self) -> None:
        for client in self.clients:
            client.loop_stop()
            client.disconnect()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--sequential", type=int, default=1000, help="sequential commands (latency)")
    parser.add_argument("-m", "--fanout", type=int, default=5000, help="batteries in the bulk disable")
    parser.add_argument(
        "--device-clients", type=int, default=10, help="paho clients serving the fan-out batteries"
    )
    parser.add_argument("--bulk-rate", type=float, default=5000.0, help="PACKFLEET_COMMAND_BULK_RATE_PER_S")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("PACKFLEET_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--tcp-nodelay",
        action="store_true",
        help="TCP_NODELAY on the simulated devices too (the broker's comes from mosquitto.conf)",
    )
    parser.add_argument("--profile-control", metavar="PATH", help="run control under cProfile, stats to PATH")
    parser.add_argument("--timeline", action="store_true", help="print when the fan-out's commands moved")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on the fan-out after this")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-control-"))
    name = f"packfleet_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, query = args.admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    procs: list[subprocess.Popen[bytes]] = []
    devices: Devices | None = None
    result: dict[str, Any] = {
        "bench": "control",
        "sequential": args.sequential,
        "fanout": args.fanout,
        "bulk_rate_per_s": args.bulk_rate,
        "broker_tcp_nodelay": "set_tcp_nodelay true" in (REPO / "mosquitto.conf").read_text(),
        "devices_tcp_nodelay": args.tcp_nodelay,
        "cpus": os.cpu_count(),
    }
    try:
        migrate(url)
        broker = Mosquitto(work).start()  # the repo's mosquitto.conf, on a spare port
        mqtt_port = broker.port
        assert broker.proc is not None
        procs.append(broker.proc)
        secret = secrets.token_urlsafe(32)
        with psycopg.connect(url, row_factory=dict_row, autocommit=True) as db:
            dealer = db.execute("INSERT INTO dealers (name) VALUES ('Bench Motors') RETURNING id").fetchone()
            admin_user = db.execute(
                "INSERT INTO users (phone, name, role) VALUES ('+919000000001', 'bench', 'admin') RETURNING *"
            ).fetchone()
            db.execute(
                """INSERT INTO batteries (serial_number, dealer_id)
                   SELECT 'BENCH' || lpad(g::text, 6, '0'), %s FROM generate_series(0, %s) g""",
                (dealer["id"], args.fanout),
            )
        serials = [f"BENCH{i:06d}" for i in range(args.fanout + 1)]
        latency_serial, fanout_serials = serials[0], serials[1:]
        token = issue_token(admin_user, secret=secret, ttl=timedelta(hours=2))
        devices = Devices(mqtt_port, serials, args.device_clients, nodelay=args.tcp_nodelay)

        api_port = free_port()
        env = {
            **os.environ,
            "PACKFLEET_DATABASE_URL": url,
            "PACKFLEET_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
            "PACKFLEET_JWT_SECRET": secret,
            "PACKFLEET_LOG_LEVEL": "WARNING",
            "PACKFLEET_COMMAND_BULK_RATE_PER_S": str(args.bulk_rate),
            "PACKFLEET_RATE_LIMIT_API": "1000000/minute",
            "PACKFLEET_CONTROL_CLIENT_ID": "bench-control",
        }
        log = open(work / "services.log", "wb")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    *(["-m", "cProfile", "-o", args.profile_control] if args.profile_control else []),
                    "-m",
                    "control",
                ],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        for _attempt in range(3):  # another process may take the spare port before the API binds it
            api = subprocess.Popen(
                [sys.executable, "-m", "packfleet", "api", "--port", str(api_port)],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_port(api_port, proc=api)
                break
            except TimeoutError:
                api.kill()
                api.wait()
                api_port = free_port()
        procs.append(api)
        time.sleep(1.0)  # control connects and subscribes

        headers = {"Authorization": f"Bearer {token}"}
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=headers, timeout=30) as api,
            psycopg.connect(url, row_factory=dict_row, autocommit=True) as db,
        ):
            battery_id = db.execute(
                "SELECT id FROM batteries WHERE serial_number = %s", (latency_serial,)
            ).fetchone()["id"]
            latencies: list[float] = []
            for i in range(args.sequential):
                action = "inactive" if i % 2 == 0 else "active"
                started = time.perf_counter()
                answer = api.post(f"/api/batteries/{latency_serial}/control", json={"action": action})
                answer.raise_for_status()
                command_id = db.execute(
                    "SELECT id FROM commands WHERE battery_id = %s ORDER BY seq DESC LIMIT 1", (battery_id,)
                ).fetchone()["id"]
                while True:
                    status = db.execute("SELECT status FROM commands WHERE id = %s", (command_id,)).fetchone()
                    if status["status"] == "succeeded":
                        break
                    if status["status"] in ("failed", "expired", "cancelled"):
                        raise RuntimeError(f"command {command_id} ended {status['status']}")
                    if time.perf_counter() - started > 30:
                        raise RuntimeError(f"command {command_id} stuck in {status['status']}")
                    time.sleep(0.001)
                latencies.append((time.perf_counter() - started) * 1000)
            median = "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM {}))"
            segments = db.execute(
                f"""SELECT {median.format("sent_at - created_at")} AS q,
                          {median.format("delivered_at - sent_at")} AS d,
                          {median.format("finished_at - delivered_at")} AS f
                   FROM commands WHERE battery_id = %s AND status = 'succeeded'""",  # noqa: S608 - constants
                (battery_id,),
            ).fetchone()
            if latencies:
                result.update(
                    {
                        "segment_ms_p50_created_to_published": round(float(segments["q"]) * 1000, 2),
                        "segment_ms_p50_published_to_received": round(float(segments["d"]) * 1000, 2),
                        "segment_ms_p50_received_to_applied": round(float(segments["f"]) * 1000, 2),
                    }
                )
                result.update(
                    {
                        "latency_ms_p50": round(statistics.median(latencies), 2),
                        "latency_ms_p99": round(pct(latencies, 99), 2),
                        "latency_ms_max": round(max(latencies), 2),
                        "latency_ms_mean": round(statistics.fmean(latencies), 2),
                    }
                )

            def cpu_s(proc: subprocess.Popen[bytes]) -> float:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

            control_proc, api_proc = procs[1], procs[2]
            if args.fanout:
                cpu_before = {
                    "control": cpu_s(control_proc),
                    "api": cpu_s(api_proc),
                    "bench": time.process_time(),
                }
                started = time.perf_counter()
                answer = api.post(
                    "/api/commands/bulk",
                    json={"action": "disable", "serials": fanout_serials, "reason": "bench fan-out"},
                )
                answer.raise_for_status()
                bulk_id = answer.json()["id"]
                accepted = time.perf_counter() - started
                while True:
                    counts = {
                        r["status"]: r["n"]
                        for r in db.execute(
                            "SELECT status, count(*) AS n FROM commands WHERE bulk_id = %s GROUP BY status",
                            (bulk_id,),
                        ).fetchall()
                    }
                    if counts.get("succeeded", 0) == len(fanout_serials):
                        break
                    if time.perf_counter() - started > args.timeout:
                        result["fanout_stuck"] = counts
                        break
                    time.sleep(0.02)
                elapsed = time.perf_counter() - started
                result["fanout_control_cpu_s"] = round(cpu_s(control_proc) - cpu_before["control"], 2)
                result["fanout_api_cpu_s"] = round(cpu_s(api_proc) - cpu_before["api"], 2)
                # This process is the simulated devices (and a poll every 20 ms).
                result["fanout_devices_cpu_s"] = round(time.process_time() - cpu_before["bench"], 2)
                if args.timeline:
                    for column in ("next_attempt_at", "sent_at", "delivered_at", "finished_at"):
                        buckets = db.execute(
                            f"""SELECT floor(extract(epoch FROM {column} - t0.t) * 2) / 2 AS s, count(*) AS n
                                FROM commands,
                                     (SELECT min(created_at) AS t FROM commands WHERE bulk_id = %s) t0
                                WHERE bulk_id = %s GROUP BY 1 ORDER BY 1""",  # noqa: S608 - a fixed column name
                            (bulk_id, bulk_id),
                        ).fetchall()
                        print(
                            column,
                            [(float(b["s"]) if b["s"] is not None else None, b["n"]) for b in buckets],
                            file=sys.stderr,
                        )
                spans = db.execute(
                    """SELECT extract(epoch FROM finished_at - created_at) * 1000 AS ms,
                              extract(epoch FROM finished_at - last_sent_at) * 1000 AS after_publish_ms
                       FROM commands WHERE bulk_id = %s AND status = 'succeeded'""",
                    (bulk_id,),
                ).fetchall()
                result.update(
                    {
                        "fanout_all_succeeded_s": round(elapsed, 3),
                        "fanout_bulk_request_s": round(accepted, 3),
                        "fanout_succeeded": counts.get("succeeded", 0),
                        "fanout_publish_to_applied_ms_p50": round(
                            statistics.median(float(s["after_publish_ms"]) for s in spans), 2
                        )
                        if spans
                        else None,
                        "fanout_publish_to_applied_ms_p99": round(
                            pct([float(s["after_publish_ms"]) for s in spans], 99), 2
                        )
                        if spans
                        else None,
                        "fanout_all_published_s": round(
                            float(
                                db.execute(
                                    "SELECT extract(epoch FROM max(sent_at) - min(created_at)) AS s"
                                    " FROM commands WHERE bulk_id = %s",
                                    (bulk_id,),
                                ).fetchone()["s"]
                                or 0
                            ),
                            3,
                        ),
                        "fanout_attempts_max": db.execute(
                            "SELECT max(attempts) AS a FROM commands WHERE bulk_id = %s", (bulk_id,)
                        ).fetchone()["a"],
                    }
                )
    finally:
        if devices is not None:
            devices.close()
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if sys.exc_info()[0] is None:
            shutil.rmtree(work, ignore_errors=True)
        else:  # the broker's and services' logs of a failed run
            print(f"logs kept in {work}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
