"""Battery-pack list pages kept in memory (api/battery_packs/page_cache.py): served again only while
nothing they show has changed, whoever changed it; per caller's scope; built per request without
the listening connection."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests import factories
from tests.api.conftest import World, bearer


def _served(result: str) -> float:
    return REGISTRY.get_sample_value("packfleet_api_battery_pack_pages_total", {"result": result}) or 0.0


def _packs(db: psycopg.Connection, dealer_id: int, n: int) -> list[dict]:  # type: ignore[type-arg]
    return [factories.battery(db, dealer_id=dealer_id) for _ in range(n)]


def test_a_page_is_served_from_memory_until_something_it_shows_changes(
    client: TestClient, world: World, db: psycopg.Connection
) -> None:
    battery = _packs(db, world.dealer_a["id"], 3)[0]
    headers = bearer(world.dealer_a_user)

    def status() -> str:
        answer = client.get("/api/battery_pack?limit=500", headers=headers)
        assert answer.status_code == 200
        return next(p["status"] for p in answer.json() if p["asset_tag"] == battery["serial_number"])

    assert status() == "active"
    hits = _served("hit")
    assert status() == "active"
    assert _served("hit") == hits + 1  # the same page, nothing changed: from memory
    # Changes committed by another process (as control does) show in the very next request: no wait.
    for i in range(30):
        new = "inactive" if i % 2 == 0 else "active"
        db.execute("UPDATE batteries SET status = %s, updated_at = now() WHERE id = %s", (new, battery["id"]))
        assert status() == new, f"round {i}: a page from before the change was served"
    # Columns no list shows (ingest's) leave the kept page in place.
    status()
    hits = _served("hit")
    db.execute("UPDATE batteries SET last_seen_at = now(), online = true WHERE id = %s", (battery["id"],))
    status()
    assert _served("hit") == hits + 1


def test_a_page_is_kept_per_scope(client: TestClient, world: World, db: psycopg.Connection) -> None:
    mine = {b["serial_number"] for b in _packs(db, world.dealer_a["id"], 2)}
    theirs = {b["serial_number"] for b in _packs(db, world.dealer_b["id"], 2)}
    for user, sees, never in ((world.dealer_a_user, mine, theirs), (world.dealer_b_user, theirs, mine)):
        for _ in range(2):  # built, then from memory
            answer = client.get("/api/battery_pack?limit=500", headers=bearer(user))
            tags = {p["asset_tag"] for p in answer.json()}
            assert sees <= tags and not never & tags


def test_without_the_listening_connection_pages_are_built_then_kept_again(
    client: TestClient, world: World, db: psycopg.Connection
) -> None:
    battery = _packs(db, world.dealer_a["id"], 1)[0]
    headers = bearer(world.dealer_a_user)
    cache = client.app.state.pack_pages  # type: ignore[attr-defined]

    def label() -> str:
        answer = client.get("/api/battery_pack?limit=500", headers=headers)
        return next(p["status_label"] for p in answer.json() if p["asset_tag"] == battery["serial_number"])

    label()
    db.execute(
        """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
           WHERE application_name = 'packfleet-api-pack-pages' AND datname = current_database()"""
    )
    db.execute("UPDATE batteries SET status_label = 'In Repair' WHERE id = %s", (battery["id"],))
    bypassed = _served("bypass")
    assert label() == "In Repair"  # the lost connection is noticed on the next round trip
    assert _served("bypass") > bypassed
    deadline = time.monotonic() + 15
    while not cache.listening:
        assert time.monotonic() < deadline, "the page cache did not listen again"
        time.sleep(0.1)
    db.execute("UPDATE batteries SET status_label = 'In Vehicle' WHERE id = %s", (battery["id"],))
    assert label() == "In Vehicle"
    hits = _served("hit")
    assert label() == "In Vehicle"
    assert _served("hit") == hits + 1


def test_the_cache_can_be_turned_off(
    client_for: Callable[..., TestClient], world: World, db: psycopg.Connection
) -> None:
    client = client_for(api_page_cache_mb=0)
    battery = _packs(db, world.dealer_a["id"], 1)[0]
    assert client.app.state.pack_pages is None  # type: ignore[attr-defined]
    answer = client.get("/api/battery_pack?limit=500", headers=bearer(world.dealer_a_user))
    assert battery["serial_number"] in {p["asset_tag"] for p in answer.json()}


def test_a_listener_that_stops_answering_is_dropped(
    client: TestClient, world: World, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.battery_packs import page_cache

    monkeypatch.setattr(page_cache, "ROUND_TRIP_TIMEOUT_S", 0.5)
    battery = _packs(db, world.dealer_a["id"], 1)[0]
    headers = bearer(world.dealer_a_user)
    client.get("/api/battery_pack?limit=500", headers=headers)
    pid = db.execute(
        """SELECT pid FROM pg_stat_activity
           WHERE application_name = 'packfleet-api-pack-pages' AND datname = current_database()"""
    ).fetchone()["pid"]
    try:
        os.kill(pid, signal.SIGSTOP)  # the listener's server process hangs (as on a dead network)
    except PermissionError:
        pytest.skip("needs to signal the PostgreSQL server's processes")
    try:
        db.execute("UPDATE batteries SET status_label = 'Stuck' WHERE id = %s", (battery["id"],))
        started = time.monotonic()
        answer = client.get("/api/battery_pack?limit=500", headers=headers)
        assert time.monotonic() - started < 5
        labels = {p["asset_tag"]: p["status_label"] for p in answer.json()}
        assert labels[battery["serial_number"]] == "Stuck"
        assert not client.app.state.pack_pages.listening  # type: ignore[attr-defined]
    finally:
        os.kill(pid, signal.SIGCONT)
