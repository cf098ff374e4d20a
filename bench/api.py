"""API benchmark: detail and list latency under concurrent clients, and a 50,000-row CSV import.

Creates its own database on the PostgreSQL server at --admin-url, loads --batteries batteries with a
latest reading each, starts the real app under `uvicorn` (--workers processes) on a spare port, and
drives it with --clients concurrent keep-alive HTTP/1.1 clients for --seconds per endpoint, in a
closed loop and then paced (--paced). While the list is read, --changes-per-s packs change (as
control's commands change them), so list pages kept by the API are rebuilt meanwhile. Last line:
one JSON object.

    python bench/api.py                                   # full run: 10,000 batteries, 50 clients
    python bench/api.py --batteries 1000 --clients 10 --seconds 3 --csv-rows 5000   # small run
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.auth.tokens import issue_token  # noqa: E402
from packfleet.migrate import migrate  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_database(admin: str, name: str) -> str:
    base, _, query = admin.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


def load(url: str, *, batteries: int) -> tuple[list[str], dict]:  # type: ignore[type-arg]
    """Dealers, consumers, batteries with pack fields, and one latest reading per battery (COPY)."""
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        dealers = [
            conn.execute("INSERT INTO dealers (name) VALUES (%s) RETURNING id", (f"Dealer {i}",)).fetchone()[
                0
            ]
            for i in range(10)
        ]
        with conn.cursor().copy("COPY consumers (dealer_id, name, phone) FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((dealers[i % 10], f"Consumer {i}", f"+91800{i:07d}"))
        consumers = [r[0] for r in conn.execute("SELECT id FROM consumers ORDER BY id")]
        serials = [f"BENCH{i:06d}" for i in range(batteries)]
        columns = (
            "(serial_number, dealer_id, owner_id, company, status_label, model, manufacturer_name, location, "
            "warranty_months, health_score)"
        )
        with conn.cursor().copy(f"COPY batteries {columns} FROM STDIN") as copy:
            for i, serial in enumerate(serials):
                copy.write_row(
                    (
                        serial,
                        dealers[i % 10],
                        consumers[i % 1000] if i % 3 else None,
                        "Irasus",
                        "In Vehicle",
                        f"Model {'XYZ'[i % 3]}",
                        "Irasus",
                        ["Delhi", "Pune", "Agra"][i % 3],
                        12,
                        60 + i % 40,
                    )
                )
        ids = [r[0] for r in conn.execute("SELECT id FROM batteries ORDER BY id")]
        with conn.cursor().copy(
            "COPY battery_latest (battery_id, ts, voltage, current, soc, temperature, lat, lon) FROM STDIN"
        ) as copy:
            for battery_id in ids:
                copy.write_row(
                    (
                        battery_id,
                        now - timedelta(seconds=random.randint(0, 600)),
                        48.0 + random.random(),
                        random.uniform(-20, 20),
                        random.uniform(5, 100),
                        30.0,
                        12.97,
                        77.59,
                    )
                )
        conn.execute("VACUUM ANALYZE")  # the steady state autovacuum reaches: visibility map set
        admin = conn.execute(
            "INSERT INTO users (phone, name, role) VALUES ('+919000000001', 'Bench Admin', 'admin') "
            "RETURNING id, role, name"
        ).fetchone()
    return serials, {"id": admin[0], "role": admin[1], "name": admin[2]}


async def _clients(
    base: str, token: str, paths: list[str], clients: int, start_at: float, seconds: float, rate: float
):  # type: ignore[no-untyped-def]
    """Clients, each on its own keep-alive connection, requesting random paths from `start_at` for
    `seconds`. Closed loop (each sends its next request when the answer arrives) when `rate` is 0;
    otherwise each sends on a fixed schedule, together `rate` requests/s, and a request's latency
    counts from when it was due (a late answer delays the next request: that wait counts too).
    Plain HTTP/1.1 over asyncio streams: httpx spends more CPU per request than the API under test,
    and client and server share this machine's cores."""
    url = httpx.URL(base)
    host, port = url.host, url.port
    latencies: list[float] = []
    errors = 0
    head = f" HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    requests = [(f"GET {p}" + head).encode() for p in paths]

    async def get(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        writer.write(request)
        header = await reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        lines = header.lower().split(b"\r\n")
        length = next(int(line[15:]) for line in lines if line.startswith(b"content-length:"))
        return status, await reader.readexactly(length)

    connections = [await asyncio.open_connection(host, port) for _ in range(clients)]
    try:
        for reader, writer in connections:  # warm every connection before the clock starts
            status, body = await get(reader, writer, requests[0])
            if status != 200 or not isinstance(json.loads(body), (dict, list)):
                raise RuntimeError(f"{paths[0]} answered {status}: {body[:200]!r}")
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + seconds
        busy_before, stolen_before = _machine_cpu_seconds()

        async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal errors
            interval = clients / rate if rate else 0.0
            due = time.perf_counter() + random.uniform(0, interval)
            while time.perf_counter() < deadline:
                request = random.choice(requests)
                if rate:
                    await asyncio.sleep(due - time.perf_counter())
                    started, due = due, due + interval
                else:
                    started = time.perf_counter()
                status, _ = await get(reader, writer, request)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    errors += 1

        await asyncio.gather(*(worker(r, w) for r, w in connections))
        busy, stolen = _machine_cpu_seconds()
        busy, stolen = busy - busy_before, stolen - stolen_before
    finally:
        for _, writer in connections:
            writer.close()
    return latencies, errors, busy, stolen


def _machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has spent busy (all cores, every process: server, database,
    clients) and those the hypervisor gave to other machines (steal), from /proc/stat. Busy per
    request is a figure less noisy than latency on a shared machine; steal says how shared it was."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _client_process(args: tuple) -> tuple[list[float], int, float, float]:  # type: ignore[type-arg]
    import uvloop

    return uvloop.run(_clients(*args))


def drive(
    base: str, token: str, paths: list[str], *, clients: int, procs: int, seconds: float, rate: float = 0.0
) -> dict:  # type: ignore[type-arg]
    """`clients` concurrent clients spread over `procs` processes; latency per request in ms."""
    start_at = time.time() + 2.0 + clients * 0.01
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        parts = pool.map(
            _client_process,
            [(base, token, paths, n, start_at, seconds, rate * n / clients) for n in shares if n],
        )
    latencies = sorted(x for part, *_ in parts for x in part)
    errors = sum(part[1] for part in parts)
    busy, stolen = parts[0][2:]  # the client processes measure the same window: one reading
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p90_ms": round(latencies[int(len(latencies) * 0.90) - 1], 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "max_ms": round(latencies[-1], 2),
        "cpu_ms_per_request": round(busy * 1000 / len(latencies), 3),
        "cpu_stolen_share": round(stolen / (seconds * (os.cpu_count() or 1)), 3),
    }


class PackChanges:
    """While running, change one random pack's status `rate` times a second (as control does on a
    command), so that list pages kept by the API are rebuilt while clients read them."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate, self.done, self.seconds = url, rate, 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PackChanges:
        self.seconds = time.monotonic()
        if self.rate:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self.rate:
            self._thread.join()
        self.seconds = time.monotonic() - self.seconds

    @property
    def per_s(self) -> float:
        return round(self.done / self.seconds, 1) if self.seconds else 0.0

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM batteries")]
            due = time.monotonic()
            while not self._stop.is_set():
                conn.execute(
                    """UPDATE batteries SET updated_at = now(),
                           status = CASE status WHEN 'active' THEN 'maintenance' ELSE 'active' END
                       WHERE id = %s""",
                    (random.choice(ids),),
                )
                self.done += 1
                due += 1 / self.rate
                self._stop.wait(max(0.0, due - time.monotonic()))


def csv_import(base: str, token: str, rows: int) -> dict:  # type: ignore[type-arg]
    prefix = f"CSV{uuid.uuid4().hex[:6].upper()}"
    out = io.StringIO()
    out.write(
        "asset_tag,company,status_label,model,manufacturer_name,location,warranty_months,"
        "battery_cell_chemistry,battery_pack_nominal_voltage,battery_pack_nominal_charge_capacity,"
        "bms_type,battery_cell_type,battery_pack_casing\n"
    )
    for i in range(rows):
        out.write(
            f"{prefix}{i:07d},Irasus,In Warehouse,Model X,Irasus,Delhi,3,Li-NMC,48 V,48 Ah,Firmware,"
            "Cylindrical,Plastic\n"
        )
    data = out.getvalue().encode()
    started = time.perf_counter()
    answer = httpx.post(
        f"{base}/api/battery_pack",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": ("packs.csv", data, "text/csv")},
        timeout=300,
    )
    elapsed = time.perf_counter() - started
    created = answer.json().get("created") if answer.status_code == 201 else None
    return {
        "rows": rows,
        "status": answer.status_code,
        "created": created,
        "seconds": round(elapsed, 2),
        "bytes": len(data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("PACKFLEET_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--batteries", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="per endpoint")
    parser.add_argument("--csv-rows", type=int, default=50_000)
    parser.add_argument(
        "--pool",
        type=int,
        default=2,
        help="database connections per API process (2 cores shared with PostgreSQL: more only queue there)",
    )
    parser.add_argument("--procs", type=int, default=1, help="client processes the clients are spread over")
    parser.add_argument(
        "--paced",
        type=float,
        default=0.5,
        help="then run each endpoint again with the clients sending at this share of its measured "
        "throughput (0: skip)",
    )
    parser.add_argument(
        "--changes-per-s",
        type=float,
        default=20.0,
        help="packs changed per second while the list is read (0: none)",
    )
    parser.add_argument("--workers", type=int, default=2, help="API processes (production: one per core)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    name = f"packfleet_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(args.admin_url, name)
    server = None
    try:
        migrate(url)
        t0 = time.perf_counter()
        serials, admin = load(url, batteries=args.batteries)
        print(f"loaded {len(serials)} batteries in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        secret = secrets.token_urlsafe(32)
        port = _free_port()
        env = {
            **os.environ,
            "PACKFLEET_DATABASE_URL": url,
            "PACKFLEET_JWT_SECRET": secret,
            "PACKFLEET_DB_POOL_MAX": str(args.pool),
            # One admin token drives every client: raise the per-user limits so they measure the API.
            "PACKFLEET_RATE_LIMIT_API": "100000000/minute",
            "PACKFLEET_RATE_LIMIT_UPLOAD": "1000/minute",
            "PACKFLEET_LOG_LEVEL": "WARNING",
            "PACKFLEET_STORAGE_DIR": str(Path("/tmp") / name),
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:app_from_environment",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the API server did not start")
            time.sleep(0.1)
        token = issue_token(admin, secret=secret, ttl=timedelta(hours=1))
        detail_paths = [f"/api/batteries/{s}" for s in serials]
        detail = drive(
            base, token, detail_paths, clients=args.clients, procs=args.procs, seconds=args.seconds
        )
        print(f"GET /api/batteries/{{serial}}: {detail}", file=sys.stderr)
        pages = ["/api/battery_pack?limit=100"]  # the first page, as the issue asks
        # Packs change meanwhile: the page the API keeps is rebuilt after each change.
        with PackChanges(url, args.changes_per_s) as changes:
            listing = drive(base, token, pages, clients=args.clients, procs=args.procs, seconds=args.seconds)
        listing["pack_changes_per_s"] = changes.per_s
        print(f"GET /api/battery_pack?limit=100: {listing}", file=sys.stderr)
        paced = {}
        if args.paced:  # the same clients, sending at a share of the throughput just measured
            for endpoint, paths, saturated in (
                ("battery_detail", detail_paths, detail),
                ("battery_pack_list_100", pages, listing),
            ):
                rate = round(saturated["rps"] * args.paced, 1)
                with PackChanges(url, args.changes_per_s if paths is pages else 0):
                    run = drive(
                        base,
                        token,
                        paths,
                        clients=args.clients,
                        procs=args.procs,
                        seconds=args.seconds,
                        rate=rate,
                    )
                paced[endpoint] = {"rate": rate, **run}
                print(f"{endpoint} at {rate} requests/s: {paced[endpoint]}", file=sys.stderr)
        imported = csv_import(base, token, args.csv_rows) if args.csv_rows else None
        print(f"CSV import: {imported}", file=sys.stderr)
        result = {
            "batteries": args.batteries,
            "clients": args.clients,
            "workers": args.workers,
            "client_procs": args.procs,
            "db_pool_per_worker": args.pool,
            "seconds_per_endpoint": args.seconds,
            "cpus": os.cpu_count(),
            "battery_detail": detail,
            "battery_pack_list_100": listing,
            "paced": paced,
            "csv_import": imported,
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(result))


if __name__ == "__main__":
    main()
