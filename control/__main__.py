"""`python -m control`: one control process configured by PACKFLEET_* variables.

`PACKFLEET_CONTROL_CLIENT_ID` names its MQTT session (default `packfleet-control-<hostname>`); give each
process that runs at the same time its own, and a restarted one the same as before, so that the
broker hands it the acks queued while it was away.
"""

from __future__ import annotations

import asyncio
import signal

from control.main import run
from packfleet.logs import setup_logging
from packfleet.settings import Settings


async def _main() -> None:
    settings = Settings()
    setup_logging(settings.log_level, json_lines=settings.log_json)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, stop)


if __name__ == "__main__":
    asyncio.run(_main())
