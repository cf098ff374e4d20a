"""The telemetry query API through HTTP: history raw and bucketed, caps, CSV, latest, positions, fleet."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests import factories
from tests.api.conftest import bearer
from tests.api.telemetry.conftest import series, settle_rollups, store

START = datetime(2026, 3, 2, tzinfo=UTC)
RANGE = {"from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"}


@pytest.fixture
def fleet(db: psycopg.Connection) -> dict:
    """A dealer with two batteries (10 hours of readings at one a minute) and its user, and an admin."""
    dealer = factories.dealer(db)
    one = factories.battery(db, dealer_id=dealer["id"])
    two = factories.battery(db, dealer_id=dealer["id"])
    with db.transaction():
        store(db, series(one["id"], START, 600))
        store(db, series(two["id"], START, 600, step=timedelta(minutes=2)))
    settle_rollups(db)
    return {
        "dealer": dealer,
        "one": one,
        "two": two,
        "user": factories.user(db, "dealer", dealer_id=dealer["id"]),
        "admin": factories.user(db, "admin"),
    }


def _get(client: TestClient, user: dict, path: str, **params: object):
    return client.get(path, params=params, headers=bearer(user))


def test_raw_pages_follow_the_cursor_to_every_reading_once(client: TestClient, fleet: dict) -> None:
    serial = fleet["one"]["serial_number"]
    seen: list[str] = []
    cursor = None
    while True:
        params = {**RANGE, "limit": 250, **({"cursor": cursor} if cursor else {})}
        body = _get(client, fleet["user"], f"/api/telemetry/{serial}", **params).json()
        assert body["source"] == "raw" and body["interval"] is None
        seen += [p["ts"] for p in body["points"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 600
    assert seen == sorted(seen)
    first = _get(client, fleet["user"], f"/api/telemetry/{serial}", **RANGE, limit=1).json()["points"][0]
    assert first == {
        "ts": "2026-03-02T00:00:00Z",
        "voltage": 48.0,
        "current": 0.0,
        "soc": 20.0,
        "temperature": None,
    }


def test_buckets_of_each_aggregate(client: TestClient, fleet: dict) -> None:
    serial = fleet["one"]["serial_number"]
    got = {}
    for agg in ("avg", "min", "max", "first", "last"):
        body = _get(
            client, fleet["user"], f"/api/telemetry/{serial}", **RANGE, interval="15m", agg=agg, fields="soc"
        ).json()
        assert body["source"] == "raw" and body["interval"] == "PT15M" and body["agg"] == agg
        assert len(body["points"]) == 40 and set(body["points"][0]) == {"ts", "readings", "soc"}
        got[agg] = body["points"][0]["soc"]
    socs = [20 + (i * 7) % 80 for i in range(15)]
    assert got == {
        "avg": pytest.approx(sum(socs) / 15, abs=1e-4),
        "min": min(socs),
        "max": max(socs),
        "first": socs[0],
        "last": socs[-1],
    }
    hourly = _get(client, fleet["user"], f"/api/telemetry/{serial}", **RANGE, interval="PT1H").json()
    assert hourly["source"] == "hourly" and [p["readings"] for p in hourly["points"]] == [60] * 10
    daily = _get(client, fleet["user"], f"/api/telemetry/{serial}", **RANGE, interval="1d").json()
    assert daily["source"] == "daily" and daily["points"][0]["readings"] == 600


def test_bucketed_answers_cover_whole_buckets(client: TestClient, fleet: dict) -> None:
    body = _get(
        client,
        fleet["user"],
        f"/api/telemetry/{fleet['one']['serial_number']}",
        **{"from": "2026-03-02T00:20:00Z", "to": "2026-03-02T02:10:00Z"},
        interval="1h",
    ).json()
    assert (body["from"], body["to"]) == ("2026-03-02T00:00:00Z", "2026-03-02T03:00:00Z")
    assert [p["readings"] for p in body["points"]] == [60, 60, 60]


def test_a_request_over_the_points_cap_names_an_interval_that_fits(client: TestClient, fleet: dict) -> None:
    answer = _get(
        client,
        fleet["user"],
        f"/api/telemetry/{fleet['one']['serial_number']}",
        **{"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
        interval="1m",
    )
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == "TOO_MANY_POINTS" and body["suggested_interval"] == "PT15M"
    assert "interval=PT15M" in body["details"]


@pytest.mark.parametrize(
    "params",
    [
        {"interval": "P1M"},
        {"interval": "0m"},
        {"agg": "median"},
        {"fields": "voltage,pressure"},
        {"from": "2026-03-02T00:00:00"},  # no time zone
        {"to": "0.5"},  # a Unix time, not RFC 3339 (was taken as 1970)
        {"from": "1700000000"},
        {"from": "2026-03-03T00:00:00Z", "to": "2026-03-02T00:00:00Z"},
        {"limit": 0},
        {"limit": 10**9},
        {"cursor": "nonsense"},
        {"format": "xml"},
    ],
)
def test_bad_input_is_a_400_in_the_spec_body(client: TestClient, fleet: dict, params: dict) -> None:
    answer = _get(client, fleet["user"], f"/api/telemetry/{fleet['one']['serial_number']}", **params)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) >= {"error", "details", "code"}


def test_csv_streams_every_reading_and_neutralises_formulas(
    client: TestClient, db: psycopg.Connection, fleet: dict
) -> None:
    battery = factories.battery(
        db, dealer_id=fleet["dealer"]["id"], serial="-A1-" + factories.unique_serial()[:8]
    )
    with db.transaction():
        store(db, series(battery["id"], START, 3000, step=timedelta(seconds=20)))
    settle_rollups(db)
    answer = _get(client, fleet["user"], f"/api/telemetry/{battery['serial_number']}", **RANGE, format="csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["serial_number", "ts", "voltage", "current", "soc", "temperature"]
    assert len(rows) == 3001 and [r[1] for r in rows[1:]] == sorted({r[1] for r in rows[1:]})  # 2 pages
    assert {r[0] for r in rows[1:]} == {"'" + battery["serial_number"]}
    assert any(r[3].startswith("-") for r in rows[1:])  # a negative current stays a number
    bucketed = _get(
        client,
        fleet["user"],
        f"/api/telemetry/{battery['serial_number']}",
        **RANGE,
        format="csv",
        interval="1h",
    )
    lines = bucketed.text.splitlines()
    assert lines[0] == "serial_number,ts,readings,voltage,current,soc,temperature" and len(lines) == 18


def test_latest_filters(client: TestClient, db: psycopg.Connection, fleet: dict) -> None:
    one, two = fleet["one"], fleet["two"]
    now = datetime.now(UTC)
    db.execute(
        """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc, lat, lon)
           VALUES (%s, %s, 48, 1, 15, 12.97, 77.59), (%s, %s, 50, -2, 80, NULL, NULL)""",
        (one["id"], now - timedelta(minutes=2), two["id"], now - timedelta(hours=3)),
    )
    db.execute(
        "UPDATE batteries SET online = (id = %s) WHERE id IN (%s, %s)", (one["id"], one["id"], two["id"])
    )
    other = factories.battery(db, dealer_id=fleet["dealer"]["id"])  # never reported

    def serials(**params: object) -> list[str]:
        answer = _get(client, fleet["user"], "/api/telemetry/latest", **params)
        assert answer.status_code == 200, answer.text
        return [r["serial_number"] for r in answer.json()]

    everything = serials()
    assert set(everything) == {one["serial_number"], two["serial_number"], other["serial_number"]}
    assert serials(online="true") == [one["serial_number"]]
    assert serials(soc_below=20) == [one["serial_number"]]
    assert set(serials(stale_minutes=60)) == {two["serial_number"], other["serial_number"]}
    row = next(
        r
        for r in _get(client, fleet["user"], "/api/telemetry/latest").json()
        if r["serial_number"] == one["serial_number"]
    )
    assert row["soc"] == 15 and row["online"] is True and 100 < row["age_seconds"] < 200
    assert _get(client, fleet["user"], "/api/telemetry/latest", soc_below=0).status_code == 400


def test_the_switches_are_compared_one_by_one_as_the_battery_api_does(
    client: TestClient, db: psycopg.Connection, fleet: dict
) -> None:
    pending, cut, off = fleet["one"], fleet["two"], factories.battery(db, dealer_id=fleet["dealer"]["id"])
    db.execute(
        """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc, lat, lon)
           SELECT id, now(), 48, 1, 55, 12.97, 77.59 FROM unnest(%s::bigint[]) AS id""",
        ([pending["id"], cut["id"], off["id"]],),
    )
    # pending: a disable the device has not applied; cut: a full disable asked over a confirmed
    # charging cut (it still discharges); off: a disable confirmed
    for battery, reported_enabled, reported_spec, status in (
        (pending, True, "both", "active"),
        (cut, False, "charging", "active"),
        (off, False, "both", "inactive"),
    ):
        db.execute(
            """UPDATE batteries SET desired_enabled = false, desired_spec = 'both',
                   desired_status = 'inactive', reported_enabled = %s, reported_spec = %s, status = %s
               WHERE id = %s""",
            (reported_enabled, reported_spec, status, battery["id"]),
        )
    keys = ("status", "charging", "discharging", "desired_charging", "desired_discharging", "in_sync")
    latest = {r["serial_number"]: r for r in _get(client, fleet["user"], "/api/telemetry/latest").json()}
    features = _get(client, fleet["user"], "/api/telemetry/positions").json()["features"]
    shown = {f["properties"]["serial_number"]: f["properties"] for f in features}
    expected = {
        pending["serial_number"]: ("active", True, True, False, False, False),
        cut["serial_number"]: ("active", False, True, False, False, False),
        off["serial_number"]: ("inactive", False, False, False, False, True),
    }
    for serial, want in expected.items():
        assert tuple(latest[serial][k] for k in keys) == want, serial
        assert tuple(shown[serial][k] for k in keys) == want, serial
        detail = _get(client, fleet["user"], f"/api/batteries/{serial}").json()
        assert (detail["battery"]["status"], detail["control"]["in_sync"]) == (want[0], want[-1])


def test_positions_are_geojson_within_the_box(
    client: TestClient, db: psycopg.Connection, fleet: dict
) -> None:
    one, two = fleet["one"], fleet["two"]
    now = datetime.now(UTC)
    db.execute(
        """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc, lat, lon)
           VALUES (%s, %s, 48, 1, 55, 12.97, 77.59), (%s, %s, 50, -2, 80, -17.5, 179.5)""",
        (one["id"], now, two["id"], now),
    )
    body = _get(client, fleet["user"], "/api/telemetry/positions").json()
    assert body["type"] == "FeatureCollection"
    feature = next(f for f in body["features"] if f["properties"]["serial_number"] == one["serial_number"])
    assert feature["type"] == "Feature" and feature["geometry"] == {
        "type": "Point",
        "coordinates": [77.59, 12.97],
    }
    assert feature["properties"]["soc"] == 55 and feature["properties"]["status"] == "active"
    box = _get(client, fleet["user"], "/api/telemetry/positions", bbox="77,12,78,13.5").json()
    assert [f["properties"]["serial_number"] for f in box["features"]] == [one["serial_number"]]
    across = _get(client, fleet["user"], "/api/telemetry/positions", bbox="179,-20,-179,-10").json()
    assert [f["properties"]["serial_number"] for f in across["features"]] == [two["serial_number"]]
    for bad in ("1,2,3", "0,0,200,10", "a,b,c,d", "0,0,1,1,", " 0,0,1,1", "0,0,1e1,1"):
        assert _get(client, fleet["user"], "/api/telemetry/positions", bbox=bad).status_code == 400
    # South of north is a box no point lies in (the document cannot order two numbers in one string)
    empty = _get(client, fleet["user"], "/api/telemetry/positions", bbox="0,50,10,40")
    assert empty.status_code == 200 and empty.json()["features"] == []


def test_fleet_buckets_for_the_dealer(client: TestClient, fleet: dict) -> None:
    body = _get(client, fleet["user"], "/api/telemetry/fleet", **RANGE, interval="1h").json()
    assert body["source"] == "hourly" and body["interval"] == "PT1H"
    first = body["buckets"][0]
    assert first["ts"] == "2026-03-02T00:00:00Z"
    assert first["batteries_reporting"] == 2 and first["readings"] == 90
    assert first["soc_p10"] <= first["soc_p50"] <= first["soc_p90"]
    assert first["energy_charged_kwh"] > 0 and first["energy_discharged_kwh"] > 0
    fine = _get(client, fleet["user"], "/api/telemetry/fleet", **RANGE, interval="30m").json()
    assert fine["source"] == "raw" and fine["buckets"][0]["readings"] == 45


def test_any_range_the_document_allows_is_answered(client: TestClient, fleet: dict) -> None:
    """A range over 3660 days, or reaching before 1970 or after 2200, was a 400 the document did not
    mention: raw readings are paged and buckets capped, so the width costs nothing; the edges are
    where no reading can be."""
    serial = fleet["one"]["serial_number"]
    for params in (
        {"from": "2000-01-01T00:00:00Z"},
        {"from": "0001-01-01T00:00:00+01:00", "to": "9999-12-31T23:59:59-01:00", "limit": 5},
    ):
        answer = _get(client, fleet["user"], f"/api/telemetry/{serial}", **params)
        assert answer.status_code == 200, (params, answer.text)
    assert len(answer.json()["points"]) == 5 and answer.json()["points"][0]["ts"] == "2026-03-02T00:00:00Z"
    fleet_wide = _get(
        client, fleet["user"], "/api/telemetry/fleet", interval="366d", **{"from": "1900-01-01T00:00:00Z"}
    )
    assert fleet_wide.status_code == 200, fleet_wide.text


def test_fields_and_cursor_are_refused_only_off_their_documented_pattern(
    client: TestClient, fleet: dict
) -> None:
    serial = fleet["one"]["serial_number"]
    for params in ({"fields": "0000"}, {"fields": "soc, voltage"}, {"cursor": "dDoxMjM"}, {"cursor": "+12"}):
        answer = _get(client, fleet["user"], f"/api/telemetry/{serial}", **RANGE, **params)
        assert answer.status_code == 400 and answer.json()["code"] == "VALIDATION_ERROR", (
            params,
            answer.text,
        )
    for params in ({"fields": "soc,voltage,soc"}, {"cursor": "0"}, {"cursor": "-9999999999999999"}):
        answer = _get(client, fleet["user"], f"/api/telemetry/{serial}", **RANGE, **params)
        assert answer.status_code == 200, (params, answer.text)
