"""The bulk roll-out's state filters read the device's confirmed switches, not its raw flag."""

from __future__ import annotations

import asyncio

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.commands.models import BulkFilter
from api.commands.queries import batteries_matching
from tests import factories
from tests.api.conftest import World, bearer
from tests.api.contract import document
from tests.api.finance.conftest import today


def _matching(database_url: str, **fields: object) -> set[int]:
    async def query() -> set[int]:
        conn = await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row)
        async with conn:
            rows = await batteries_matching(conn, selector=BulkFilter(**fields), limit=10_000, today=today())
        return {r["id"] for r in rows}

    return asyncio.run(query())


def test_reported_and_in_sync_filters_compare_switch_by_switch(
    db: psycopg.Connection, database_url: str
) -> None:
    dealer = factories.dealer(db)
    on, charging_cut, off, silent = (factories.battery(db, dealer_id=dealer["id"])["id"] for _ in range(4))
    states = {  # (desired enabled, spec), (reported enabled, spec)
        on: ((True, "both"), (True, "both")),
        charging_cut: ((False, "both"), (False, "charging")),  # a full disable over a charging cut
        off: ((False, "both"), (False, "both")),
        silent: ((False, "charging"), (None, None)),  # never reported
    }
    for battery, ((want, want_spec), (has, has_spec)) in states.items():
        db.execute(
            """UPDATE batteries SET desired_enabled = %s, desired_spec = %s,
                      reported_enabled = %s, reported_spec = %s WHERE id = %s""",
            (want, want_spec, has, has_spec, battery),
        )
    mine = {"dealer_id": dealer["id"]}
    assert _matching(database_url, **mine, reported_enabled=True) == {on}
    assert _matching(database_url, **mine, reported_enabled=False) == {charging_cut, off}
    assert _matching(database_url, **mine, in_sync=True) == {on, off}
    assert _matching(database_url, **mine, in_sync=False) == {charging_cut, silent}


def test_the_health_report_counts_what_the_devices_have_not_confirmed(
    client: TestClient, db: psycopg.Connection
) -> None:
    dealer = factories.dealer(db)
    pending_cut, confirmed = (factories.battery(db, dealer_id=dealer["id"])["id"] for _ in range(2))
    # a charging cut asked for but not confirmed keeps the battery `active` both as asked and as confirmed
    db.execute(
        """UPDATE batteries SET desired_enabled = false, desired_spec = 'charging',
                  reported_enabled = true, reported_spec = 'both' WHERE id = %s""",
        (pending_cut,),
    )
    db.execute(
        "UPDATE batteries SET reported_enabled = true, reported_spec = 'both' WHERE id = %s", (confirmed,)
    )
    admin = factories.user(db, "admin")
    report = client.get(
        "/api/batteries/health-report", params={"dealer_id": dealer["id"]}, headers=bearer(admin)
    ).json()
    assert report["total_batteries"] == 2 and report["awaiting_confirmation"] == 1, report


def test_the_document_says_which_bulk_selectors_are_refused(client: TestClient, world: World) -> None:
    """A filter of nulls, and serials with a filter, were documented valid and refused: now the
    document has no null in a filter, at least one field, and serials or filter (one of them)."""
    schemas = document()["components"]["schemas"]
    bulk_filter, request = schemas["BulkFilter"], schemas["BulkRequest"]
    assert bulk_filter["minProperties"] == 1
    assert all("anyOf" not in f and "default" not in f for f in bulk_filter["properties"].values())
    assert request["oneOf"] == [{"required": ["serials"]}, {"required": ["filter"]}]
    serial = world.battery_a["serial_number"]
    base = {"action": "disable", "reason": "fuzz"}
    for body in (
        {**base, "filter": {"dealer_id": None, "online": None}},
        {**base, "filter": {}},
        {**base, "serials": [serial], "filter": {"online": True}},
        {**base, "serials": None},
        base,
    ):
        answer = client.post("/api/commands/bulk", json=body, headers=bearer(world.admin))
        assert answer.status_code == 400 and answer.json()["code"] == "VALIDATION_ERROR", (body, answer.text)
