"""Fixtures of the API tests: an app on the session database, with generous limits unless a test sets them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from packfleet.settings import Settings
from tests import factories
from tests.conftest import make_settings, token_for

GENEROUS = {
    "rate_limit_auth": "10000/minute",
    "rate_limit_api": "100000/minute",
    "rate_limit_upload": "10000/minute",
}


def api_settings(database_url: str, storage: Path, **overrides: Any) -> Settings:
    return make_settings(database_url, **{**GENEROUS, "storage_dir": storage, **overrides})


@pytest.fixture
def client_for(database_url: str, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Build a TestClient (lifespan running) with these settings overrides; closed at teardown."""
    opened: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        client = TestClient(create_app(api_settings(database_url, tmp_path / "documents", **overrides)))
        client.__enter__()
        opened.append(client)
        return client

    yield build
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for()


def clear_of_a_window_edge(window_s: int = 60, margin_s: float = 3.0) -> None:
    """Wait, when needed, until the rate-limit window (aligned to the epoch) has `margin_s` left.

    The sliding-window counter weighs the previous window's hits by the time left in it, and floors
    the sum: a burst that straddles an edge can get one request past the limit. Tests that count
    requests up to a limit start clear of an edge so that they see the limit exactly.
    """
    left = window_s - time.time() % window_s
    if left < margin_s:
        time.sleep(left + 0.05)


def bearer(user: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user)}"}


class World:
    """Two dealers with their users, consumers and batteries, and the other roles."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.admin = factories.user(conn, "admin")
        self.dealer_a = factories.dealer(conn, "A Motors")
        self.dealer_b = factories.dealer(conn, "B Motors")
        self.dealer_a_user = factories.user(conn, "dealer", dealer_id=self.dealer_a["id"])
        self.dealer_b_user = factories.user(conn, "dealer", dealer_id=self.dealer_b["id"])
        self.consumer_a = factories.consumer(conn, self.dealer_a["id"], "Asha A")
        self.consumer_b = factories.consumer(conn, self.dealer_b["id"], "Bala B")
        self.consumer_a_user = factories.user(conn, "consumer", consumer_id=self.consumer_a["id"])
        self.technician = factories.user(conn, "technician")
        self.nbfc = factories.user(conn, "nbfc")
        self.battery_a = factories.battery(
            conn, dealer_id=self.dealer_a["id"], owner_id=self.consumer_a["id"]
        )
        self.battery_b = factories.battery(
            conn, dealer_id=self.dealer_b["id"], owner_id=self.consumer_b["id"]
        )

    def users(self) -> dict[str, dict[str, Any]]:
        return {
            "admin": self.admin,
            "dealer": self.dealer_a_user,
            "other_dealer": self.dealer_b_user,
            "consumer": self.consumer_a_user,
            "technician": self.technician,
            "nbfc": self.nbfc,
        }


@pytest.fixture
def world(db: psycopg.Connection) -> World:
    return World(db)


@pytest.fixture(autouse=True)
def kept_pack_data_matches_the_packs(database_url: str) -> Iterator[None]:
    """After every API test: each pack's stored object is the one its rows give now (migration 0033),
    and the kept live counts per dealer are the counted ones (migration 0034)."""
    yield
    with psycopg.connect(database_url) as conn:
        miscounted = conn.execute(
            """SELECT * FROM (SELECT coalesce(dealer_id, 0) AS dealer_key, count(*) AS live FROM batteries
                              WHERE deleted_at IS NULL GROUP BY 1) counted
               FULL JOIN (SELECT * FROM battery_live_counts WHERE live <> 0) kept USING (dealer_key)
               WHERE counted.live IS DISTINCT FROM kept.live LIMIT 5"""
        ).fetchall()
        assert not miscounted, f"battery_live_counts differs from the rows: {miscounted}"
        stale = conn.execute(
            """WITH fresh AS (
                        SELECT battery_id, tail FROM battery_pack_tails(ARRAY(SELECT id FROM batteries))),
                    kept AS (SELECT battery_id, tail FROM battery_pack_views)
               SELECT battery_id
               FROM ((TABLE fresh EXCEPT TABLE kept) UNION ALL (TABLE kept EXCEPT TABLE fresh)) d
               LIMIT 5"""
        ).fetchall()
    assert not stale, f"stale battery_pack_views rows: {stale}"
