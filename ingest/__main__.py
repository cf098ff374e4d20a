"""`python -m ingest [--retire]`: one ingest worker configured from PACKFLEET_* variables.

The same as `packfleet ingest`; `--retire` removes a worker for good (see ingest.main.run).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from ingest.main import run
from packfleet.logs import setup_logging
from packfleet.settings import Settings


async def _main(settings: Settings, retire: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, stop, retire=retire)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    parser.add_argument("--retire", action="store_true", help="drain this worker's session, then end it")
    args = parser.parse_args()
    settings = Settings()
    setup_logging(settings.log_level, json_lines=settings.log_json)
    asyncio.run(_main(settings, args.retire))


if __name__ == "__main__":
    main()
