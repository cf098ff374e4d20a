"""Battery detail lookups of concurrent requests share queries (api/batteries/details.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from api.batteries import details as details_module
from api.batteries.details import BatteryDetails
from packfleet.db import open_pool
from tests import factories


def test_concurrent_lookups_share_queries_and_each_gets_its_own_row(
    database_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    dealer = factories.dealer(db, "Batch Motors")
    serials = [factories.battery(db, dealer_id=dealer["id"])["serial_number"] for _ in range(30)]
    gone = factories.battery(db, dealer_id=dealer["id"])["serial_number"]
    db.execute("UPDATE batteries SET deleted_at = now() WHERE serial_number = %s", (gone,))
    queries_run: list[int] = []
    real = details_module.queries.get_battery_details

    async def counted(conn: Any, batch: list[str]) -> list[dict[str, Any]]:
        queries_run.append(len(batch))
        return await real(conn, batch)

    monkeypatch.setattr(details_module.queries, "get_battery_details", counted)

    async def scenario() -> list[Any]:
        async with open_pool(database_url, name="test", max_size=2, autocommit=True) as pool:
            details = BatteryDetails(pool)
            asked = [*serials, serials[0], gone, "NO-SUCH-BATTERY", "not a serial!"]
            return await asyncio.gather(*(details.get(s) for s in asked))

    found = asyncio.run(scenario())
    assert [row["serial_number"] for row in found[:31]] == [*serials, serials[0]]
    assert found[31:] == [None, None, None]  # deleted, unknown, not a serial at all
    assert found[0]["r_present"] is False and found[0]["p_id"] is None
    assert sum(queries_run) == 32  # each serial once (one asked twice); the malformed one not at all
    assert len(queries_run) <= 3, queries_run  # one query per batch, not one per request
