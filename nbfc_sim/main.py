"""Run the simulated lender's HTTP server until stopped (packfleet nbfc-sim, packfleet up, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from nbfc_sim.lender import Lender, LenderOptions, create_lender_app

log = logging.getLogger("nbfc_sim")


class _Server(uvicorn.Server):
    """Leaves SIGINT/SIGTERM to whoever runs it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: any free port), bound before anyone is told the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def run(
    options: LenderOptions,
    stop: asyncio.Event,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    sock: socket.socket | None = None,
    lender: Lender | None = None,
) -> None:
    """Serve the lender's API (on `sock`, else on host:port) until `stop` is set."""
    lender = lender or Lender(options)
    sock = sock or bind(host, port)
    server = _Server(uvicorn.Config(create_lender_app(lender), log_config=None))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    log.info(
        "nbfc simulator up",
        extra={"code": options.code, "port": sock.getsockname()[1], "webhook": options.webhook_url},
    )
    try:
        await asyncio.wait([serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        for task in list(lender.tasks):
            task.cancel()
        await asyncio.gather(serving, *lender.tasks, return_exceptions=True)
        sock.close()
