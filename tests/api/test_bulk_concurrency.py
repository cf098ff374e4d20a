"""Two imports racing for the same asset tags: one wins whole, the other writes nothing (409 report)."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
from psycopg.rows import dict_row

from api.auth.tokens import Principal
from api.battery_packs import bulk
from api.errors import Conflict


async def _import(url: str, tags: list[str]) -> object:
    admin = Principal(user_id=1, role="admin")
    rows = [(i + 1, {"asset_tag": t, "model": "Race"}) for i, t in enumerate(tags)]
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True) as conn:
        try:
            return await bulk.bulk_create(
                conn, principal=admin, rows=rows, dry_run=False, all_or_nothing=True, source="json"
            )
        except Conflict as exc:
            return exc


def test_racing_imports(database_url: str, db: psycopg.Connection) -> None:
    tags = [f"R{uuid.uuid4().hex[:10].upper()}" for _ in range(2000)]

    async def race() -> list[object]:
        return await asyncio.gather(_import(database_url, tags), _import(database_url, list(reversed(tags))))

    results = asyncio.run(race())
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, Conflict)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert wins[0]["created"] == 2000
    assert losses[0].code == "ASSET_EXISTS" and losses[0].extra["failed"] == 2000  # every row reported
    count = db.execute(
        "SELECT count(*) AS n FROM batteries WHERE serial_number = ANY(%s)", (tags,)
    ).fetchone()
    assert count["n"] == 2000


def test_racing_allocations_leave_one_open(client, world) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    from tests.api.conftest import bearer

    tag = world.battery_a["serial_number"]

    def allocate(i: int) -> int:
        body = {"target_category": "Vehicle", "target_individual": f"KA-{i}", "status_label": "In Vehicle"}
        return client.post(
            f"/api/battery_pack/{tag}/allocate", json=body, headers=bearer(world.admin)
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(allocate, range(16))) == {200}
    history = client.get(f"/api/battery_pack/{tag}", headers=bearer(world.admin)).json()["allocations"]
    assert len(history) == 16 and sum(a["released_at"] is None for a in history) == 1
