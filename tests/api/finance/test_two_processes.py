"""Two real processes at once against the real database: the auto-disable run (as two schedulers
during a deploy would run it) issues one command per battery, and one payment reference posted by
two processes is one payment."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from decimal import Decimal
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.auth.tokens import Principal
from api.finance import overdue, payments
from api.finance.access import Scope
from api.finance.models import PaymentCreate
from tests.api.conftest import World
from tests.api.finance.conftest import age_warnings, loan
from tests.conftest import make_settings

CONTEXT = multiprocessing.get_context("spawn")


def _auto_disable(url: str, dealer_id: int, barrier: Any, out: Any) -> None:
    async def go() -> dict[str, Any]:
        settings = make_settings(url, finance_disable_grace_hours=0)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            barrier.wait(30)
            return await overdue.run(
                conn, settings=settings, scope=Scope(dealer_id=dealer_id), threshold_days=7, actor="proc"
            )

    result = asyncio.run(go())
    out.put({"disabled": result["disabled_count"], "warned": result["warned_count"]})


def _pay(url: str, loan_id: int, reference: str, barrier: Any, out: Any) -> None:
    async def go() -> tuple[int, bool]:
        settings = make_settings(url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            barrier.wait(30)
            answer, created = await payments.record_payment(
                conn,
                principal=Principal(user_id=1, role="admin"),
                settings=settings,
                loan_id=loan_id,
                body=PaymentCreate(reference=reference, amount=Decimal("1000.00"), method="upi"),
            )
            return answer["payment"]["id"], created

    out.put(asyncio.run(go()))


def _together(target: Any, *args: Any) -> list[Any]:
    barrier, out = CONTEXT.Barrier(2), CONTEXT.Queue()
    procs = [CONTEXT.Process(target=target, args=(*args, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return results


def test_two_processes_warn_once_and_disable_once(
    client: TestClient, world: World, database_url: str
) -> None:
    made = [loan(client, world, months_ago=1, days_ago=10, amount=1200, tenure=12, rate=0) for _ in range(5)]
    ids = [m["id"] for m in made]
    warned = _together(_auto_disable, database_url, world.dealer_a["id"])
    assert sorted(r["warned"] for r in warned) == [0, 5] and all(r["disabled"] == 0 for r in warned)
    age_warnings(world.conn)
    disabled = _together(_auto_disable, database_url, world.dealer_a["id"])
    assert sorted(r["disabled"] for r in disabled) == [0, 5]
    counts = world.conn.execute(
        """SELECT (SELECT count(*) FROM commands c JOIN loans l ON l.battery_id = c.battery_id
                   WHERE l.id = ANY(%(ids)s)) AS commands,
                  (SELECT count(*) FROM overdue_disables WHERE loan_id = ANY(%(ids)s)) AS records,
                  (SELECT count(*) FROM sms_outbox s JOIN overdue_disables d
                       ON s.dedupe_key LIKE 'battery_disabled:overdue_disable:' || d.id || ':%%'
                   WHERE d.loan_id = ANY(%(ids)s)) AS sms""",
        {"ids": ids},
    ).fetchone()
    assert counts == {"commands": 5, "records": 5, "sms": 5}


def test_two_processes_post_one_reference(client: TestClient, world: World, database_url: str) -> None:
    made = loan(client, world, months_ago=1, amount=12000, tenure=12, rate=0)
    reference = f"P-{uuid.uuid4().hex[:8]}"
    results = _together(_pay, database_url, made["id"], reference)
    assert len({payment_id for payment_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, True]
    stored = world.conn.execute(
        "SELECT count(*) AS n, sum(amount) AS total FROM loan_payments WHERE loan_id = %s", (made["id"],)
    ).fetchone()
    assert stored == {"n": 1, "total": Decimal("1000.00")}
    paid = world.conn.execute(
        "SELECT sum(principal_paid + interest_paid) AS paid FROM loan_instalments WHERE loan_id = %s",
        (made["id"],),
    ).fetchone()
    assert paid["paid"] == Decimal("1000.00")
