"""More new users at once than the API has pooled connections: every one is answered promptly.

Found by bench/load.py: a route takes its connection (ConnDep) before its caller is authenticated,
and the first request of a token checks the account with a second connection from the same pool
(api/auth/standing.py). With as many such requests as the pool has connections, each holds one and
waits for another: nothing moves until the pool's 30 s timeout turns them all into 503s.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from tests import factories
from tests.api.conftest import bearer

POOL = 2


def test_a_burst_of_new_tokens_does_not_starve_the_pool(client_for, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    client = client_for(db_pool_max=POOL)
    dealer = factories.dealer(db)
    users = [factories.user(db, "dealer", dealer_id=dealer["id"]) for _ in range(POOL * 4)]
    started = time.monotonic()
    with ThreadPoolExecutor(len(users)) as pool:
        answers = list(pool.map(lambda u: client.get("/api/consumers", headers=bearer(u)), users))
    took = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * len(users), [a.text[:100] for a in answers]
    assert took < 5, f"{len(users)} first requests on a pool of {POOL} took {took:.1f} s"
