"""Load: API users in a realistic mix while simulated batteries stream and a bulk disable rolls out.

Starts everything itself: a database of its own on --admin-url's server, a Mosquitto with the
project's mosquitto.conf on a spare port, `packfleet ingest` x2 (one shared subscription),
`control`, `scheduler`, `api` and `packfleet sim` (--multiplexed connections past the open-files
limit), then drives the API with locust (as a library, headless): dealers listing and reading
batteries and packs and opening their dashboard, consumers reading their profile and loan,
technicians reading and updating their tickets, operators querying telemetry. A third of the way in,
a bulk disable of every battery rolls out at --bulk-rate. Routes a build does not have yet (service,
analytics, finance land on main one by one) are found missing in its OpenAPI and reported skipped.

Measured: requests/s, error rate (target 0), p50/p99 per endpoint, ingest lag (readings' age when
stored, sampled every few seconds; target: no growth from the first third to the last), command
completion of the roll-out, and where the machine's CPU went (per process, and PostgreSQL's
backends). Last line: one JSON object.

    python bench/load.py                                        # full: 200 users, 10,000 batteries, 180 s
    python bench/load.py --users 10 --batteries 200 --seconds 30 --interval 5   # small run
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # locust runs its users on gevent: patch before anything opens a socket

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402
from locust import HttpUser, between, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.auth.tokens import issue_token  # noqa: E402
from packfleet.migrate import migrate  # noqa: E402
from tests import services  # noqa: E402  (the harness: a broker on a spare port, processes)
from tests.chaos.stack import Service, Supervisor  # noqa: E402

SECRET = uuid.uuid4().hex + uuid.uuid4().hex
DEALERS = 20
LAG_EVERY_S = 5.0
POSTGRES = "postgresql (every backend)"


def seed(url: str, *, batteries: int) -> dict[str, Any]:
    """Dealers, their users and consumers (one per battery, some with app logins), technicians,
    operators, and the batteries spread over the dealers, owned by the consumers (COPY)."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        dealers = [
            conn.execute(
                "INSERT INTO dealers (name) VALUES (%s) RETURNING id", (f"Load Dealer {i}",)
            ).fetchone()["id"]
            for i in range(DEALERS)
        ]
        width = max(5, len(str(batteries)))  # the simulator's own naming: PREFIX00001, ...
        serials = [f"LD{n:0{width}d}" for n in range(1, batteries + 1)]
        with conn.cursor().copy("COPY consumers (dealer_id, name, phone) FROM STDIN") as copy:
            for n in range(batteries):
                copy.write_row((dealers[n % DEALERS], f"Rider {n}", f"+9170{n:08d}"))
        consumers = [r["id"] for r in conn.execute("SELECT id FROM consumers ORDER BY id").fetchall()]
        with conn.cursor().copy(
            "COPY batteries (serial_number, dealer_id, owner_id, model, location) FROM STDIN"
        ) as copy:
            for n, serial in enumerate(serials):
                copy.write_row((serial, dealers[n % DEALERS], consumers[n], "LFP 48V 30Ah", "Bengaluru"))

        def user(role: str, n: int, **ids: int | None) -> dict[str, Any]:
            return conn.execute(
                """INSERT INTO users (phone, name, role, dealer_id, consumer_id)
                   VALUES (%s, %s, %s, %s, %s) RETURNING *""",
                (
                    f"+9180{hash((role, n)) % 10**8:08d}",
                    f"{role} {n}",
                    role,
                    ids.get("dealer_id"),
                    ids.get("consumer_id"),
                ),
            ).fetchone()

        users = {
            "dealer": [user("dealer", i, dealer_id=d) for i, d in enumerate(dealers)],
            "consumer": [user("consumer", i, consumer_id=c) for i, c in enumerate(consumers[:200])],
            "technician": [user("technician", i) for i in range(10)],
            "admin": [user("admin", i) for i in range(5)],
        }
    return {"serials": serials, "users": users, "dealers": dealers}


def token(user: dict[str, Any]) -> str:
    return issue_token(user, secret=SECRET, ttl=timedelta(hours=6))


class World:
    """What the simulated users pick from; filled in before they start."""

    serials: list[str] = []
    by_dealer: dict[int, list[str]] = {}
    tokens: dict[str, list[tuple[dict[str, Any], str]]] = {}
    routes: set[str] = set()
    tickets: dict[int, list[int]] = {}  # technician user id -> ticket ids

    @classmethod
    def has(cls, path: str) -> bool:
        return path in cls.routes


class Base(HttpUser):
    abstract = True
    role = ""
    wait_time = between(0.5, 2.0)  # a person (or a dashboard) between clicks

    def on_start(self) -> None:
        self.user, bearer = random.choice(World.tokens[self.role])
        self.client.headers["Authorization"] = f"Bearer {bearer}"

    def get(self, path: str, name: str, **params: Any) -> None:
        self.client.get(path, params=params or None, name=name)


class Dealer(Base):
    role = "dealer"
    weight = 10

    def on_start(self) -> None:
        super().on_start()
        self.mine = World.by_dealer[self.user["dealer_id"]]

    @task(6)
    def list_batteries(self) -> None:
        self.get("/api/batteries", "GET /api/batteries", limit=20, offset=random.randrange(0, 200, 20))

    @task(8)
    def battery(self) -> None:
        self.get(f"/api/batteries/{random.choice(self.mine)}", "GET /api/batteries/{serial}")

    @task(4)
    def list_packs(self) -> None:
        self.get("/api/battery_pack", "GET /api/battery_pack", limit=20, offset=random.randrange(0, 200, 20))

    @task(3)
    def pack(self) -> None:
        self.get(f"/api/battery_pack/{random.choice(self.mine)}", "GET /api/battery_pack/{i}")

    @task(2)
    def health(self) -> None:
        self.get("/api/batteries/health-report", "GET /api/batteries/health-report")

    @task(2)
    def consumers(self) -> None:
        self.get("/api/consumers", "GET /api/consumers", limit=20)

    @task(2)
    def dashboard(self) -> None:
        if World.has("/api/analytics/dealer-dashboard"):
            self.get("/api/analytics/dealer-dashboard", "GET /api/analytics/dealer-dashboard")

    @task(1)
    def analytics(self) -> None:
        if World.has("/api/analytics/battery-health"):
            self.get("/api/analytics/battery-health", "GET /api/analytics/battery-health")


class Consumer(Base):
    role = "consumer"
    weight = 5

    @task(3)
    def profile(self) -> None:
        self.get(f"/api/consumers/{self.user['consumer_id']}/profile", "GET /api/consumers/{id}/profile")

    @task(2)
    def loan(self) -> None:
        self.get(f"/api/consumers/{self.user['consumer_id']}/finance", "GET /api/consumers/{id}/finance")


class Technician(Base):
    role = "technician"
    weight = 2

    @task(3)
    def tickets(self) -> None:
        if World.has("/api/service/tickets"):
            self.get("/api/service/tickets", "GET /api/service/tickets")

    @task(2)
    def update(self) -> None:
        mine = World.tickets.get(self.user["id"])
        if mine and World.has("/api/service/tickets/{ticket_id}/update"):
            self.client.post(
                f"/api/service/tickets/{random.choice(mine)}/update",
                json={"description": f"checked on site {uuid.uuid4().hex[:6]}"},
                name="POST /api/service/tickets/{id}/update",
            )


class Operator(Base):
    role = "admin"
    weight = 3

    @task(4)
    def latest(self) -> None:
        self.get("/api/telemetry/latest", "GET /api/telemetry/latest", soc_below=20)

    @task(4)
    def history(self) -> None:
        self.get(
            f"/api/telemetry/{random.choice(World.serials)}", "GET /api/telemetry/{serial}", interval="1m"
        )

    @task(2)
    def fleet(self) -> None:
        self.get("/api/telemetry/fleet", "GET /api/telemetry/fleet", interval="1m")

    @task(1)
    def positions(self) -> None:
        self.get("/api/telemetry/positions", "GET /api/telemetry/positions")

    @task(1)
    def bulk_status(self) -> None:
        if World.bulk_id:
            self.get(f"/api/commands/bulk/{World.bulk_id}", "GET /api/commands/bulk/{bulk_id}")


World.bulk_id = None  # type: ignore[attr-defined]


def _open_tickets(base: str, url: str) -> dict[int, list[int]]:
    """Technician profiles for the technician users and tickets for them to work on (auto-assigned
    on opening), where this build has the service desk; returns each technician's tickets."""
    if "/api/service/tickets" not in World.routes or "/api/service/technicians" not in World.routes:
        return {}
    admin = {"Authorization": f"Bearer {World.tokens['admin'][0][1]}"}
    with httpx.Client(base_url=base, headers=admin, timeout=10) as api:
        for n, (tech, _) in enumerate(World.tokens["technician"]):
            answer = api.post(
                "/api/service/technicians",
                json={
                    "phone": tech["phone"],
                    "name": tech["name"],
                    "skills": ["battery_maintenance"],
                    "location": "Bengaluru",
                    "latitude": 12.97 + n * 0.01,
                    "longitude": 77.59,
                },
            )
            if answer.status_code != 201:
                print(f"technician profile refused: {answer.text[:200]}", file=sys.stderr)
                return {}
    dealer, bearer = World.tokens["dealer"][0]
    with psycopg.connect(url, row_factory=dict_row) as conn:
        batteries = conn.execute(
            "SELECT id FROM batteries WHERE dealer_id = %s ORDER BY id LIMIT 20", (dealer["dealer_id"],)
        ).fetchall()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {bearer}"}, timeout=10) as api:
        for battery in batteries:
            api.post(
                "/api/service/tickets",
                json={
                    "battery_id": battery["id"],
                    "issue_category": "performance",
                    "description": "Battery not holding charge properly",
                    "location": "Bengaluru",
                },
            )
    found: dict[int, list[int]] = {}
    for tech, bearer in World.tokens["technician"]:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {bearer}"}, timeout=10) as api:
            answer = api.get("/api/service/tickets")
            if answer.status_code == 200:
                found[tech["id"]] = [t["id"] for t in answer.json()]
    print(f"tickets for the technicians: {sum(map(len, found.values()))}", file=sys.stderr)
    return found


def _cpu_seconds(proc: psutil.Process) -> float:
    try:
        return float(sum(proc.cpu_times()[:2]))
    except psutil.Error:  # gone since it was listed
        return 0.0


class CpuMeter:
    """CPU seconds per named process (with its children, but for this one) between two reads."""

    def __init__(self, named: dict[str, int]) -> None:
        self.named = named
        self.start = self._read()
        self.started = time.monotonic()

    def _read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pid in self.named.items():
            try:
                proc = psutil.Process(pid)
                # The services are this process's children: counted under their own names, not here.
                procs = [proc] if pid == os.getpid() else [proc, *proc.children(recursive=True)]
                out[name] = sum(_cpu_seconds(p) for p in procs)
            except psutil.Error:
                out[name] = 0.0
        # PostgreSQL's processes (every server on the machine: on a quiet one, this run's). A backend
        # that ended before the second read is not seen then: its time falls into `other`.
        out[POSTGRES] = sum(
            _cpu_seconds(p) for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"
        )
        times = psutil.cpu_times()
        out["machine"] = times.user + times.system + getattr(times, "nice", 0.0) + getattr(times, "irq", 0.0)
        out["machine"] += getattr(times, "softirq", 0.0)
        return out

    def shares(self) -> dict[str, float]:
        """Each process's share of the machine's CPU; `other` is the rest of the busy time (the OS,
        short-lived processes and anything else running)."""
        now, wall = self._read(), (time.monotonic() - self.started) * (psutil.cpu_count() or 1)
        out = {k: round((now.get(k, 0) - v) / wall, 3) for k, v in self.start.items()}
        out["other (OS, anything else)"] = round(
            out["machine"] - sum(v for k, v in out.items() if k != "machine"), 3
        )
        out["machine_busy"] = out.pop("machine")
        return out


def ingest_lag(conn: psycopg.Connection[Any]) -> float | None:
    """Mean age (s) of the readings stored in the last few seconds, from battery_latest."""
    row = conn.execute(
        """SELECT extract(epoch FROM avg(updated_at - ts)) AS lag FROM battery_latest
           WHERE updated_at > now() - make_interval(secs => %s)""",
        (LAG_EVERY_S,),
    ).fetchone()
    return None if row is None or row["lag"] is None else round(float(row["lag"]), 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("PACKFLEET_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--spawn-rate", type=float, default=20.0)
    parser.add_argument("--batteries", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between one battery's readings")
    parser.add_argument(
        "--multiplexed", type=int, default=100, help="MQTT connections the batteries share (0: one each)"
    )
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--bulk-rate", type=float, default=200.0, help="bulk disable roll-out, commands/s")
    parser.add_argument("--api-workers", type=int, default=1)
    args = parser.parse_args()

    name = f"packfleet_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = services.with_database(args.admin_url, name)
    workdir = Path(tempfile.mkdtemp(prefix="packfleet-load-"))
    broker = None
    procs: list[Service] = []
    supervisor = None
    try:
        migrate(url)
        seeded = seed(url, batteries=args.batteries)
        print(f"seeded {args.batteries} batteries over {DEALERS} dealers; logs in {workdir}", file=sys.stderr)
        broker = services.Mosquitto(workdir / "mosquitto").start()
        tag = uuid.uuid4().hex[:6]
        api_port = services.free_port()
        env = {
            **os.environ,
            "PACKFLEET_DATABASE_URL": url,
            "PACKFLEET_MQTT_URL": broker.url,
            "PACKFLEET_JWT_SECRET": SECRET,
            "PACKFLEET_LOG_JSON": "true",
            "PACKFLEET_LOG_LEVEL": "WARNING",
            "PACKFLEET_INGEST_SHARE_GROUP": f"load{tag}",
            "PACKFLEET_CONTROL_CLIENT_ID": f"load-control-{tag}",
            "PACKFLEET_RATE_LIMIT_API": "10000000/minute",
            "PACKFLEET_COMMAND_BULK_RATE_PER_S": str(max(args.bulk_rate, 1)),
        }
        procs = [
            *(
                Service(name, ["ingest"], {**env, "PACKFLEET_INGEST_CLIENT_ID": f"{name}-{tag}"}, workdir)
                for name in ("ingest1", "ingest2")
            ),
            Service("control", ["control"], env, workdir),
            Service("scheduler", ["scheduler"], env, workdir),
            Service("api", ["api", "--port", str(api_port), "--workers", str(args.api_workers)], env, workdir),  # noqa: E501
            Service(
                "sim",
                ["sim", "--prefix", "LD", "--batteries", str(args.batteries),
                 "--interval", str(args.interval), "--multiplexed", str(args.multiplexed)],
                env,
                workdir,
                supervised=False,
            ),
        ]  # fmt: skip
        for proc in procs:
            proc.start()
        supervisor = Supervisor(procs)
        supervisor.start()
        base = f"http://127.0.0.1:{api_port}"
        services.wait_for(lambda: _up(base), timeout=60)
        World.serials = seeded["serials"]
        for n, serial in enumerate(seeded["serials"]):
            World.by_dealer.setdefault(seeded["dealers"][n % DEALERS], []).append(serial)
        World.tokens = {role: [(u, token(u)) for u in users] for role, users in seeded["users"].items()}
        World.routes = set(httpx.get(f"{base}/api/openapi.json", timeout=10).json()["paths"])
        World.tickets = _open_tickets(base, url)
        result = drive(args, base, url, procs, broker)
        result["restarts"] = [e.service for e in supervisor.exits]
        print(json.dumps(result))
    finally:
        if supervisor is not None:
            for proc in procs:
                proc.supervised = False
        for proc in reversed(procs):
            proc.stop()
        if supervisor is not None:
            supervisor.stop()
        if broker is not None:
            broker.stop()
        services.drop_database(args.admin_url, url)


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def drive(args: argparse.Namespace, base: str, url: str, procs: list[Service], broker: Any) -> dict[str, Any]:
    env = Environment(user_classes=[Dealer, Consumer, Technician, Operator], host=base)
    runner = env.create_local_runner()
    named = {p.name: p.pid for p in procs} | {
        "mosquitto": broker.proc.pid,
        "locust (this process)": os.getpid(),
    }
    lags: list[tuple[float, float]] = []
    started = time.monotonic()
    cpu = CpuMeter(named)
    runner.start(args.users, spawn_rate=args.spawn_rate)
    bulk_at = started + args.seconds / 3
    bulk: dict[str, Any] | None = None
    admin = World.tokens["admin"][0][1]
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        while time.monotonic() - started < args.seconds:
            gevent.sleep(LAG_EVERY_S)
            lag = ingest_lag(conn)
            if lag is not None:
                lags.append((time.monotonic() - started, lag))
            if bulk is None and time.monotonic() >= bulk_at:
                answer = httpx.post(
                    f"{base}/api/commands/bulk",
                    json={
                        "action": "disable",
                        "filter": {"status": "active"},  # every battery: all start active
                        "reason": "load: bulk disable",
                        "rate_per_s": args.bulk_rate,
                    },
                    headers={"Authorization": f"Bearer {admin}"},
                    timeout=60,
                )
                bulk = answer.json() if answer.status_code == 202 else {"error": answer.text[:300]}
                World.bulk_id = bulk.get("id")  # type: ignore[attr-defined]
            elapsed = round(time.monotonic() - started)
            stats = env.stats.total
            print(
                f"{elapsed:>4d} s  users {runner.user_count}  {stats.current_rps:.0f} req/s  "
                f"failures {stats.num_failures}  ingest lag {lags[-1][1] if lags else '-'} s",
                file=sys.stderr,
            )
    runner.quit()
    shares = cpu.shares()
    completion = None
    if bulk and bulk.get("id"):
        got = httpx.get(
            f"{base}/api/commands/bulk/{bulk['id']}", headers={"Authorization": f"Bearer {admin}"}, timeout=30
        )
        completion = got.json()["summary"] if got.status_code == 200 else got.text[:200]
    return _report(args, env, lags, bulk, completion, shares)


def _report(
    args: argparse.Namespace,
    env: Environment,
    lags: list[tuple[float, float]],
    bulk: dict[str, Any] | None,
    completion: Any,
    shares: dict[str, float],
) -> dict[str, Any]:
    total = env.stats.total
    endpoints = {
        name: {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "p50_ms": entry.get_response_time_percentile(0.5),
            "p99_ms": entry.get_response_time_percentile(0.99),
        }
        for (name, _method), entry in sorted(env.stats.entries.items())
    }
    third = max(1, len(lags) // 3)
    first, last = [v for _, v in lags[:third]], [v for _, v in lags[-third:]]
    failures = {f"{e.method} {e.name}: {e.error}"[:200]: e.occurrences for e in env.stats.errors.values()}
    skipped = sorted(
        p
        for p in ("/api/analytics/dealer-dashboard", "/api/analytics/battery-health", "/api/service/tickets")
        if p not in World.routes
    )
    return {
        "benchmark": "load",
        "users": args.users,
        "batteries": args.batteries,
        "interval_s": args.interval,
        "seconds": args.seconds,
        "requests": total.num_requests,
        "requests_per_s": round(total.num_requests / args.seconds, 1),
        "error_rate": round(total.num_failures / total.num_requests, 5) if total.num_requests else None,
        "failures": failures,
        "p50_ms": total.get_response_time_percentile(0.5),
        "p99_ms": total.get_response_time_percentile(0.99),
        "endpoints": endpoints,
        "skipped_routes_not_in_this_build": skipped,
        "ingest_lag_s": {
            "first_third_median": statistics.median(first) if first else None,
            "last_third_median": statistics.median(last) if last else None,
            "max": max((v for _, v in lags), default=None),
            "samples": len(lags),
        },
        "bulk_disable": {
            "total": (bulk or {}).get("total"),
            "states_at_end": completion,
            "error": (bulk or {}).get("error"),
        },
        "cpu_share_of_machine": shares,
    }


if __name__ == "__main__":
    main()
