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


def test_racing_deletions_keep_the_live_counts(database_url: str, db: psycopg.Connection) -> None:
    """Two soft deletions at once over the same four dealers: both succeed, the counts stay exact."""
    from api.battery_packs import service
    from tests import factories

    before = db.execute("SELECT coalesce(sum(live), 0) AS n FROM battery_live_counts").fetchone()["n"]
    dealers = [factories.dealer(db, f"Race {i}")["id"] for i in range(4)]
    prefix = f"D{uuid.uuid4().hex[:8].upper()}"
    packs = [
        r["serial_number"]
        for r in db.execute(
            """INSERT INTO batteries (serial_number, dealer_id)
               SELECT %s || lpad(g::text, 5, '0'), (%s::bigint[])[1 + g %% 4] FROM generate_series(1, 2000) g
               RETURNING serial_number""",
            (prefix, dealers),
        )
    ]
    admin = Principal(user_id=1, role="admin")

    async def delete(tags: list[str]) -> object:
        async with await psycopg.AsyncConnection.connect(
            database_url, row_factory=dict_row, autocommit=True
        ) as conn:
            return await service.delete_packs(conn, principal=admin, tags=tags)

    async def race() -> list[object]:
        return await asyncio.gather(delete(packs[:1000]), delete(packs[1000:]))

    for answer in asyncio.run(race()):
        assert answer["status"] == "success"  # type: ignore[index]
    kept = db.execute(
        "SELECT coalesce(sum(live), 0) AS n FROM battery_live_counts WHERE dealer_key = ANY(%s)", (dealers,)
    ).fetchone()
    assert kept["n"] == 0
    after = db.execute("SELECT coalesce(sum(live), 0) AS n FROM battery_live_counts").fetchone()["n"]
    assert after == before
