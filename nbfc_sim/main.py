"""Run the simulated lender's HTTP server until stopped (packfleet nbfc-sim, packfleet up, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn

from nbfc_sim.lender import Lender, LenderOptions, create_lender_app

log = logging.getLogger("nbfc_sim")


class _Server(uvicorn.Server):
    """Leaves SIGINT/SIGTERM to whoever runs it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run(
    options: LenderOptions,
    stop: asyncio.Event,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    lender: Lender | None = None,
) -> None:
    """Serve the lender's API on host:port until `stop` is set."""
    lender = lender or Lender(options)
    server = _Server(uvicorn.Config(create_lender_app(lender), host=host, port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    log.info("nbfc simulator up", extra={"code": options.code, "port": port, "webhook": options.webhook_url})
    try:
        await asyncio.wait([serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        for task in list(lender.tasks):
            task.cancel()
        await asyncio.gather(serving, *lender.tasks, return_exceptions=True)
