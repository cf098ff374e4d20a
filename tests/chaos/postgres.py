"""A PostgreSQL cluster of the test's own (initdb + pg_ctl on a spare port), so a test may stop it.

The shared server on 5432 serves every engineer's tests and is never touched: faults go to this one.
As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.services import free_port, wait_for

BIN = Path(os.environ.get("PACKFLEET_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
# Durable against a killed server (WAL reaches the OS before a commit returns), quick to start and
# small: a test cluster needs no fsync, since the machine itself does not crash under it.
SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "max_connections": "200",
    "listen_addresses": "127.0.0.1",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


def available() -> bool:
    return (BIN / "initdb").exists() and (BIN / "pg_ctl").exists()


class PostgresCluster:
    """initdb in a temporary folder; `start`, `stop` (immediate: as a crash would) and `url`."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="packfleet-chaos-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._owner is not None:
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
        self._run(
            [str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            quiet=True,
        )
        conf = "\n".join(f"{k} = '{v}'" for k, v in {**SETTINGS, "port": str(self.port)}.items())
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"\n{conf}\nunix_socket_directories = '{self.root}'\n")

    def _run(self, args: list[str], *, quiet: bool = False) -> None:
        if self._owner is not None:
            args = ["runuser", "-u", "postgres", "--", *args]
        subprocess.run(
            args,
            check=True,
            stdout=subprocess.DEVNULL if quiet else None,
            stderr=subprocess.DEVNULL if quiet else None,
            cwd=self.root,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def start(self) -> PostgresCluster:
        self._run([str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start"], quiet=True)
        wait_for(self.accepting, timeout=30)
        return self

    def accepting(self) -> bool:
        try:
            psycopg.connect(self.url, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; `immediate` aborts every backend as a crash would (recovery at start)."""
        self._run([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], quiet=True)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
