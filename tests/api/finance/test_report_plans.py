"""The overdue list and the collection report are planned for their values on every call: psycopg
prepares a statement on its 5th execution, and PostgreSQL then may switch to a generic plan, where
the scope's `%(dealer)s IS NULL OR l.dealer_id = %(dealer)s` can use no index (the p99 of one
dealer's list jumped after five requests)."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from api.finance import queries
from api.finance.access import Scope


def test_the_report_queries_are_never_prepared(database_url: str) -> None:
    async def go() -> int:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as c:
            for _ in range(8):
                await queries.overdue_instalments(
                    c,
                    scope=Scope(dealer_id=1),
                    today=date.today(),
                    min_days=1,
                    fee=Decimal(0),
                    fee_percent=Decimal(0),
                    fee_after_days=0,
                    limit=10,
                    offset=0,
                )
                await queries.collections_by_day(
                    c, scope=Scope(dealer_id=1), start=date.today(), end=date.today()
                )
            cur = await c.execute(
                "SELECT count(*) AS n FROM pg_prepared_statements "
                "WHERE statement LIKE '%%overdue AS%%' OR statement LIKE '%%collection_date%%'"
            )
            row = await cur.fetchone()
            assert row is not None
            return row["n"]

    assert asyncio.run(go()) == 0
