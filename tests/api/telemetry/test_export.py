"""CSV export: clients that stop reading hold no connection of the API's pool (a real server, real
sockets), and an export keeps one page in memory."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h11
import httpx
import psycopg
import pytest
import uvicorn
from psycopg.rows import dict_row

from api.app import create_app
from api.telemetry import service
from packfleet.db import open_pool
from tests import factories
from tests.api.conftest import api_settings, bearer
from tests.api.telemetry.conftest import series, store
from tests.services import free_port, wait_for, wait_for_port

READINGS = 80_000  # about 6 MB of CSV: far more than the sockets' buffers hold


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[int, object]]:
    """The API on a port of its own with a pool of two connections; (port, app)."""
    app = create_app(api_settings(database_url, tmp_path / "docs", db_pool_max=2))
    port = free_port()
    running = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield port, app
    running.should_exit = True
    thread.join(timeout=10)


def _stalled_download(port: int, path: str, token: str) -> tuple[socket.socket, h11.Connection]:
    """A client that asks for the CSV and reads nothing."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    http = h11.Connection(h11.CLIENT)
    headers = [("Host", "x"), ("Authorization", token)]
    s.sendall(
        http.send(h11.Request(method="GET", target=path, headers=headers)) + http.send(h11.EndOfMessage())
    )
    return s, http


def _csv_lines(s: socket.socket, http: h11.Connection) -> int:
    """Read the answer to its end, counting its CSV lines (keeping none)."""
    lines = 0
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(s.recv(65536))
        elif isinstance(event, h11.Response):
            assert event.status_code == 200
        elif isinstance(event, h11.Data):
            lines += bytes(event.data).count(b"\n")
        elif isinstance(event, h11.EndOfMessage):
            return lines


@pytest.fixture(scope="module")
def long_series(database_url: str) -> dict:
    """A dealer's user and a battery with READINGS readings, one a second, ending an hour ago."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        dealer = factories.dealer(db)
        battery = factories.battery(db, dealer_id=dealer["id"])
        start = datetime.now(UTC) - timedelta(hours=1, seconds=READINGS)
        with db.transaction():
            store(db, series(battery["id"], start, READINGS, step=timedelta(seconds=1)))
        return {
            "user": factories.user(db, "dealer", dealer_id=dealer["id"]),
            "battery": battery,
            "start": start,
        }


def test_stalled_downloads_hold_no_connection(long_series: dict, server: tuple[int, object]) -> None:
    port, app = server
    pool = app.state.pool  # type: ignore[attr-defined]
    token = bearer(long_series["user"])["Authorization"]
    path = f"/api/telemetry/{long_series['battery']['serial_number']}?format=csv"
    stalled = [_stalled_download(port, path, token) for _ in range(3)]  # more than the pool holds

    def settled() -> bool:  # the exports wait on their clients, not on the database
        before = pool.get_stats().get("requests_num", 0)
        time.sleep(0.3)
        return pool.get_stats().get("requests_num", 0) == before

    wait_for(settled, timeout=10)
    stats = pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"] and stats.get("requests_waiting", 0) == 0, stats
    t0 = time.monotonic()
    answer = httpx.get(
        f"http://127.0.0.1:{port}/api/telemetry/latest", headers={"Authorization": token}, timeout=10
    )
    assert answer.status_code == 200 and time.monotonic() - t0 < 2

    # A stalled client that reads again gets the whole export, read page after page meanwhile.
    for s, _ in stalled[1:]:
        s.close()
    pages_before = pool.get_stats().get("requests_num", 0)
    with stalled[0][0]:
        assert _csv_lines(*stalled[0]) == READINGS + 1  # the header, then every reading once
    assert pool.get_stats().get("requests_num", 0) > pages_before  # it had stopped half way


def test_an_export_holds_one_page_and_no_connection_between_pages(
    long_series: dict, database_url: str
) -> None:
    readings = 20_000  # about 1.5 MB of CSV; as Python rows several times that
    battery = long_series["battery"]
    start = long_series["start"]
    answer = {
        "serial_number": battery["serial_number"],
        "battery_id": battery["id"],
        "fields": ["voltage", "current", "soc", "temperature"],
        "interval": None,
        "from": start,
        "to": start + timedelta(seconds=readings),
    }

    async def export() -> tuple[int, int, bool]:
        lines, free = 0, True
        async with open_pool(database_url, name="test-export", max_size=1) as pool:
            tracemalloc.start()
            try:
                async for chunk in service.export_csv(pool, answer):
                    lines += chunk.count("\n")
                    free = free and pool.get_stats()["pool_available"] == 1
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        return lines, peak, free

    lines, peak, free = asyncio.run(export())
    assert lines == readings + 1 and free
    assert peak < 2_500_000, f"{peak} bytes at the peak of a {readings}-reading export"  # one page: ~1 MB
