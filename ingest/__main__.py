"""`python -m ingest`: one ingest worker configured from PACKFLEET_* variables (as `packfleet ingest`)."""

from __future__ import annotations

import asyncio
import signal

from ingest.main import run
from packfleet.logs import setup_logging
from packfleet.settings import Settings


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, stop)


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level, json_lines=settings.log_json)
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
