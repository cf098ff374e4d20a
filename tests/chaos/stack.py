"""The whole system as separate processes on services of the test's own, and a supervisor.

`Stack` starts a PostgreSQL cluster (tests/chaos/postgres.py) and a Mosquitto (the project's
mosquitto.conf, persistence on) on spare ports, then `packfleet ingest` twice (one shared
subscription), `control`, `scheduler` and `api`, and `packfleet sim` as the devices. Every process
is a session leader, killed with its whole group at the end, and dies with the test process
(PR_SET_PDEATHSIG). The `Supervisor` plays the production restart policy (systemd, Docker's
`restart: always`): a service that exits is started again after a second, and every exit is
recorded, so a test can tell a restart it caused from one it did not.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
from psycopg.rows import dict_row

from device_sim import counts
from packfleet.migrate import migrate
from tests import factories, services
from tests.chaos.finance import Finance
from tests.chaos.postgres import PostgresCluster
from tests.conftest import JWT_SECRET, token_for

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
RESTART_DELAY_S = 1.0


def _die_with_parent() -> None:
    """In the child before exec: receive SIGKILL when the process that started it ends."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Exit:
    service: str
    code: int | None
    at: float


@dataclass
class Service:
    """One `packfleet <args>` process, restartable; its output appended to `<logs>/<name>.log`."""

    name: str
    args: list[str]
    env: dict[str, str]
    logs: Path
    supervised: bool = True
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None

    def start(self) -> None:
        if self._log is None:
            self._log = open(self.logs / f"{self.name}.log", "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "packfleet", *self.args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill reaches its children too
            preexec_fn=_die_with_parent,
        )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send `sig` to the service's whole process group."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is not None:
            self.signal(signal.SIGCONT)  # a paused process cannot handle its SIGTERM
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # anything it left in its group
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode if self.proc else None


class Supervisor:
    """Restarts supervised services that exit, like a production restart policy; records each exit."""

    def __init__(self, services_: list[Service]) -> None:
        self.services = services_
        self.exits: list[Exit] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # The thread starts the restarted processes: it lives until stop(), as PDEATHSIG requires.
        self._thread = threading.Thread(target=self._run, name="chaos-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for service in self.services:
                if not service.supervised or service.proc is None or service.alive():
                    continue
                with self._lock:
                    self.exits.append(Exit(service.name, service.proc.returncode, time.time()))
                log.warning("%s exited (%s); restarting", service.name, service.proc.returncode)
                if self._stop.wait(RESTART_DELAY_S):
                    return
                service.start()

    def exits_since(self, at: float) -> list[Exit]:
        with self._lock:
            return [e for e in self.exits if e.at >= at]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class StackOptions:
    batteries: int = 50
    interval: float = 2.0  # seconds between one battery's readings
    prefix: str = "CH"


@dataclass
class Stack:
    """Everything a chaos test drives; `start()` once, `close()` at the end."""

    workdir: Path
    options: StackOptions = field(default_factory=StackOptions)
    cluster: PostgresCluster | None = None
    broker: services.Mosquitto | None = None
    database_url: str = ""
    api_url: str = ""
    ingest: list[Service] = field(default_factory=list)
    control: Service | None = None
    scheduler: Service | None = None
    api: Service | None = None
    sim: Service | None = None
    supervisor: Supervisor | None = None
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts_file: Path = Path()
    finance: Finance | None = None  # the finance workload, when this build has the finance routes

    # Start-up.

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cluster = PostgresCluster().start()
        self.database_url = self.cluster.create_database("packfleet")
        migrate(self.database_url)
        self._seed()
        self.broker = services.Mosquitto(self.workdir / "mosquitto").start()
        tag = uuid.uuid4().hex[:6]
        env = self._env(tag)
        logs = self.workdir
        self.ingest = [
            Service(
                f"ingest{i}",
                ["ingest"],
                {
                    **env,
                    "PACKFLEET_INGEST_CLIENT_ID": f"chaos-ingest{i}-{tag}",
                    "PACKFLEET_METRICS_PORT": str(services.free_port()),
                },
                logs,
            )
            for i in (1, 2)
        ]
        self.control = Service("control", ["control"], env, logs)
        self.scheduler = Service("scheduler", ["scheduler"], env, logs)
        api_port = services.free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.api = Service("api", ["api", "--port", str(api_port)], env, logs)
        self.counts_file = self.workdir / "sim-counts.json"
        o = self.options
        self.sim = Service(
            "sim",
            [
                "sim",
                "--batteries", str(o.batteries),
                "--interval", str(o.interval),
                "--prefix", o.prefix,
                "--provision",
                "--dealer-id", str(self.users["dealer"]["dealer_id"]),
                "--counts-file", str(self.counts_file),
                "--summary-every", "1",
            ],
            env,
            logs,
            supervised=False,  # the devices are not under test: if they die, the test fails
        )  # fmt: skip
        for service in self.services:
            service.start()
        self.supervisor = Supervisor(self.services)
        self.supervisor.start()
        services.wait_for(self.api_ready, timeout=60)
        services.wait_for(lambda: self.sim_counts() and self.all_connected(), timeout=120)
        routes = httpx.get(f"{self.api_url}/api/openapi.json", timeout=10).json()["paths"]
        if "/api/finance/auto-disable" in routes:
            serials = self.serials()
            self.finance = Finance(self, serials[-max(2, len(serials) // 10) :])
            self.finance.open_loans()
        return self

    def _env(self, tag: str) -> dict[str, str]:
        assert self.broker is not None
        return {
            **os.environ,
            "PACKFLEET_DATABASE_URL": self.database_url,
            "PACKFLEET_MQTT_URL": self.broker.url,
            "PACKFLEET_MQTT_PROTOCOL": "5",
            "PACKFLEET_JWT_SECRET": JWT_SECRET,
            "PACKFLEET_LOG_JSON": "true",
            "PACKFLEET_INGEST_SHARE_GROUP": f"chaos{tag}",
            "PACKFLEET_CONTROL_CLIENT_ID": f"chaos-control-{tag}",
            "PACKFLEET_RATE_LIMIT_API": "1000000/minute",
            "PACKFLEET_RATE_LIMIT_UPLOAD": "100000/minute",
            "PACKFLEET_RATE_LIMIT_AUTH": "100000/minute",
            "PACKFLEET_COMMAND_RETRY_BASE_SECONDS": "1",
            "PACKFLEET_COMMAND_RETRY_MAX_SECONDS": "5",
            "PACKFLEET_COMMAND_TTL_SECONDS": "900",
            "PACKFLEET_TELEMETRY_ROLLUP_REFRESH_SECONDS": "5",
            "PACKFLEET_OUTBOX_POLL_SECONDS": "1",
            "PACKFLEET_STORAGE_DIR": str(self.workdir / "storage"),
            # The run calls the overdue run itself, during the faults, and wants no wait between
            # the warning and the disable.
            "PACKFLEET_FINANCE_JOBS_ENABLED": "false",
            "PACKFLEET_FINANCE_WARNING_DAYS": "0",
            "PACKFLEET_FINANCE_DISABLE_GRACE_HOURS": "0",
        }

    def _seed(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row) as conn:
            dealer = factories.dealer(conn, "Chaos Motors")
            self.users = {
                "admin": factories.user(conn, "admin"),
                "dealer": factories.user(conn, "dealer", dealer_id=dealer["id"]),
            }

    @property
    def services(self) -> list[Service]:
        named = [*self.ingest, self.control, self.scheduler, self.api, self.sim]
        return [s for s in named if s is not None]

    # Looking at it.

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(self.users[role])}"}

    def http(self, role: str = "admin", timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers=self.headers(role), timeout=timeout)

    def api_ready(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def sim_counts(self) -> dict[str, Any] | None:
        try:
            return counts.read(self.counts_file)
        except (OSError, ValueError):
            return None

    def all_connected(self) -> bool:
        snapshot = self.sim_counts()
        return bool(snapshot) and all(b["connected"] for b in snapshot["batteries"].values())

    def redeliveries(self) -> dict[str, float]:
        """Per ingest worker: readings it was handed again and skipped as stored, since it started."""
        found = {}
        for worker in self.ingest:
            url = f"http://127.0.0.1:{worker.env['PACKFLEET_METRICS_PORT']}/metrics"
            try:
                text = httpx.get(url, timeout=2).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if line.startswith("ingest_readings_duplicate_total "):
                    found[worker.name] = float(line.split()[1])
        return found

    def db(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row, connect_timeout=5)

    def serials(self) -> list[str]:
        snapshot = self.sim_counts()
        return sorted(snapshot["batteries"]) if snapshot else []

    def rollout_serials(self) -> list[str]:
        """The batteries the run's roll-outs command: all but those the finance workload owns."""
        owned = set(self.finance.serials) if self.finance else set()
        return [s for s in self.serials() if s not in owned]

    # The end.

    def close(self) -> None:
        for service in self.services:
            service.supervised = False
        # Services first: the supervisor's thread started the restarted ones, which die with it.
        for service in reversed(self.services):
            service.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.cluster is not None:
            self.cluster.destroy()
