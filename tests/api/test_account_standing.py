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


def test_a_restarted_database_does_not_fail_the_next_account_check(  # type: ignore[no-untyped-def]
    client_for, db: psycopg.Connection
) -> None:
    """The account checks' own connection sits idle; a database restart closes it from the server.

    Found by the chaos run (database down 15 s, then a POST): the next check used the dead
    connection, and because RequestGuard checks tokens before the routes, the error was a 500.
    Now the check reconnects at once, on a GET (inside the routes) and on a POST (in the guard).
    """
    client = client_for(auth_recheck_seconds=0)
    dealer = factories.dealer(db)
    user = factories.user(db, "dealer", dealer_id=dealer["id"])
    assert client.get("/api/consumers", headers=bearer(user)).status_code == 200
    for method in ("GET", "POST"):
        ended = db.execute(
            "SELECT count(pg_terminate_backend(pid)) AS ended FROM pg_stat_activity"
            " WHERE application_name = 'packfleet-api-auth' AND datname = current_database()"
        ).fetchone()
        assert ended == {"ended": 1}
        if method == "GET":
            answer = client.get("/api/consumers", headers=bearer(user))
            assert answer.status_code == 200, answer.text
        else:
            answer = client.post("/api/consumers", headers=bearer(user), json={})
            assert answer.status_code == 400, answer.text  # the empty body's validation error, not a 500
