"""The lender's address and credentials are read when a queued call is sent (a lender that moved or
a key rotated during an outage is honoured), every attempt carries the same idempotency key, and an
outage loses nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from fastapi.testclient import TestClient

from api.nbfc.client import LenderClient, nbfc_outbox
from packfleet.db import open_pool
from packfleet.outbox import deliver_due
from tests.api.conftest import World
from tests.api.finance.conftest import fresh_battery
from tests.api.nbfc.conftest import make_lender, submit
from tests.conftest import make_settings


def test_address_and_key_are_read_at_send_time(client: TestClient, world: World, database_url: str) -> None:
    lender = make_lender(world.conn, url="http://old-lender.invalid")
    answer = submit(client, world, lender, fresh_battery(world))
    assert answer.status_code == 200, answer.text
    application_id = answer.json()["application"]["id"]
    # While the call waits, the lender moves and the key is rotated.
    world.conn.execute(
        "UPDATE nbfc_lenders SET api_base_url = 'http://new-lender.test/api' WHERE id = %s", (lender["id"],)
    )
    seen: list[httpx.Request] = []

    def lender_api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(503)  # an outage: retried, nothing lost
        return httpx.Response(201, json={"reference": "LND-1", "status": "received"})

    settings = make_settings(
        database_url,
        nbfc_api_key="rotated-key-0123",
        outbox_retry_base_seconds=0.01,
        outbox_retry_max_seconds=0.01,
    )
    box = nbfc_outbox(settings, LenderClient(settings, transport=httpx.MockTransport(lender_api)))

    async def deliver() -> None:
        async with open_pool(database_url, name="test-lender-delivery", max_size=2) as pool:
            for _ in range(50):
                await deliver_due(pool, box)
                if len(seen) >= 2:
                    return
                await asyncio.sleep(0.05)

    asyncio.run(deliver())
    assert [str(r.url) for r in seen] == ["http://new-lender.test/api/applications"] * 2
    assert {r.headers["Idempotency-Key"] for r in seen} == {f"packfleet-application-{application_id}"}
    assert {r.headers["Authorization"] for r in seen} == {"Bearer rotated-key-0123"}
    assert json.loads(seen[1].content)["application_id"] == application_id
    call: dict[str, Any] = world.conn.execute(
        "SELECT status, attempts, provider_message_id FROM nbfc_outbox WHERE application_id = %s",
        (application_id,),
    ).fetchone()
    assert call == {"status": "sent", "attempts": 2, "provider_message_id": "LND-1"}
