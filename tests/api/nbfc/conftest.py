"""NBFC test helpers: lenders, signed webhooks, and a running stack (our API over HTTP, the lender
simulator, the nbfc_outbox worker) in a background event loop."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import uvicorn
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.app import create_app
from api.nbfc.client import nbfc_outbox
from api.nbfc.lenders import ensure_lender
from nbfc_sim.lender import Lender, LenderOptions
from nbfc_sim.main import run as run_lender
from packfleet.db import open_pool
from packfleet.outbox import run_workers
from schemas.lender import EVENT_HEADER, LENDER_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.api.conftest import GENEROUS, World, bearer
from tests.conftest import make_settings
from tests.services import free_port, wait_for, wait_for_port


def make_lender(conn: psycopg.Connection, *, url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    return ensure_lender(conn, code=f"L{uuid.uuid4().hex[:10]}", name="Test Finance", api_base_url=url)


def link(conn: psycopg.Connection, user: dict[str, Any], lender: dict[str, Any]) -> None:
    conn.execute("UPDATE users SET nbfc_id = %s WHERE id = %s", (lender["id"], user["id"]))


def submit(
    client: TestClient, world: World, lender: dict[str, Any], battery: dict[str, Any], **terms: Any
) -> Any:
    return client.post(
        "/api/nbfc/submit-application",
        headers=bearer(world.dealer_a_user),
        json={
            "consumer_id": world.consumer_a["id"],
            "battery_id": battery["id"],
            "amount": 45000,
            "tenure_months": 24,
            "interest_rate": 12.5,
            "nbfc_id": lender["id"],
            **terms,
        },
    )


def signed(
    lender: dict[str, Any],
    event: dict[str, Any],
    *,
    event_id: str | None = None,
    at: float | None = None,
    secret: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments of a webhook request, signed as the lender does."""
    body = json.dumps(event).encode()
    stamp = int(at if at is not None else time.time())
    headers = {
        "Content-Type": "application/json",
        LENDER_HEADER: lender["code"],
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret or lender["webhook_secret"], stamp, body),
        EVENT_HEADER: event_id or str(uuid.uuid4()),
    }
    return {"content": body, "headers": headers}


class Background:
    """An event loop in a thread, for servers the test talks to over the network."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def start(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Stack:
    api: str
    lender_row: dict[str, Any]
    lender: Lender
    client: TestClient


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Our API on a port, a simulated lender (decides in 0.3 s, answers 503 to its first 2 calls,
    requires an API key), and the nbfc_outbox worker retrying quickly."""
    api_port, lender_port = free_port(), free_port()
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        row = make_lender(conn, url=f"http://127.0.0.1:{lender_port}")
    settings = make_settings(
        database_url,
        **GENEROUS,
        storage_dir=tmp_path_factory.mktemp("docs"),
        nbfc_api_key="sim-key-0123456789",
        outbox_retry_base_seconds=0.1,
        outbox_retry_max_seconds=0.5,
        outbox_poll_seconds=0.2,
    )
    options = LenderOptions(
        code=row["code"],
        secret=row["webhook_secret"],
        webhook_url=f"http://127.0.0.1:{api_port}/api/nbfc/webhook-status",
        api_key="sim-key-0123456789",
        decision_delay_s=0.3,
        disburse_after_s=0.3,
        unavailable_first=2,
        timezone=settings.finance_timezone,
    )
    lender = Lender(options)
    background = Background()

    async def serve() -> None:
        stop = asyncio.Event()
        background.stop = stop  # type: ignore[attr-defined]
        server = uvicorn.Server(uvicorn.Config(create_app(settings), port=api_port, log_config=None))
        async with open_pool(database_url, name="test-nbfc-outbox", max_size=4) as pool:
            await asyncio.gather(
                server.serve(),
                run_lender(options, stop, port=lender_port, lender=lender),
                run_workers(pool, database_url, [nbfc_outbox(settings)], stop, poll_s=0.2),
                _stop_server(stop, server),
            )

    running = background.start(serve())
    wait_for_port(api_port)
    wait_for_port(lender_port)
    with TestClient(create_app(settings)) as client:
        yield Stack(api=f"http://127.0.0.1:{api_port}", lender_row=row, lender=lender, client=client)
    background.loop.call_soon_threadsafe(background.stop.set)  # type: ignore[attr-defined]
    running.result(timeout=30)
    background.close()


async def _stop_server(stop: asyncio.Event, server: uvicorn.Server) -> None:
    await stop.wait()
    server.should_exit = True


def application_status(conn: psycopg.Connection, application_id: int) -> str:
    return conn.execute(
        "SELECT status FROM finance_applications WHERE id = %s", (application_id,)
    ).fetchone()["status"]


__all__ = ["wait_for"]
