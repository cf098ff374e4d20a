"""A worker process for the outbox tests: delivers `sms_outbox` through an HTTP gateway.

python -m tests.outbox_worker DATABASE_URL GATEWAY_URL --name w1 [--start-at EPOCH] [--until-empty]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

from api.messaging.jobs import sms_outbox
from packfleet.db import open_pool
from packfleet.outbox import queue_stats, run_workers
from packfleet.settings import Settings


async def main(args: argparse.Namespace) -> None:
    settings = Settings(
        database_url=args.database_url,
        sms_provider="http",
        sms_http_url=args.gateway_url,
        outbox_batch=args.batch,
        outbox_lease_seconds=args.lease,
        outbox_retry_base_seconds=0.05,
        log_json=False,
    )
    box = dataclasses.replace(sms_outbox(settings), sender_name=args.name)
    stop = asyncio.Event()
    async with open_pool(args.database_url, name=args.name, max_size=args.batch + 2) as pool:

        async def until_empty() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.1)
                async with pool.connection() as conn:
                    if (await queue_stats(conn, box))["depth"] == 0:
                        stop.set()

        await asyncio.sleep(max(0.0, args.start_at - time.time()))  # both processes begin together
        print("started", flush=True)
        watcher = asyncio.create_task(until_empty()) if args.until_empty else None
        await run_workers(pool, args.database_url, [box], stop, poll_s=0.5)
        if watcher is not None:
            await watcher


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("gateway_url")
    parser.add_argument("--name", default="worker")
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--until-empty", action="store_true")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lease", type=float, default=60.0)
    asyncio.run(main(parser.parse_args()))
