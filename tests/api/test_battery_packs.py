"""Battery packs: one and many, CSV and JSON, dry runs, soft deletes, allocation history, scoping."""

from __future__ import annotations

import logging
import time
import uuid

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.battery_packs.models import BatteryPack
from tests import factories
from tests.api.conftest import bearer
from tests.api.contract import document

SPEC_PACK = {
    "company": "Irasus Technologies Private Limited",
    "status_label": "In Warehouse",
    "model": "Model X",
    "manufacturer_name": "Irasus Technologies Private Limited",
    "location": "Delhi",
    "warranty_months": "3",
    "battery_pack": {
        "battery_cell_chemistry": "Li-NMC",
        "battery_pack_nominal_voltage": "48 V",
        "battery_pack_nominal_charge_capacity": "48 Ah",
        "bms_type": "Firmware",
        "battery_cell_type": "Cylindrical",
        "battery_pack_casing": "Plastic",
    },
}
HEADER = (
    "asset_tag,company,status_label,model,manufacturer_name,location,warranty_months,"
    "battery_cell_chemistry,battery_pack_nominal_voltage,battery_pack_nominal_charge_capacity,"
    "bms_type,battery_cell_type,battery_pack_casing"
)


def _tag(prefix: str = "P") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


def _csv_line(tag: str, model: str = "Model X", location: str = "Delhi", warranty: str = "3") -> str:
    specs = "Li-NMC,48 V,48 Ah,Firmware,Cylindrical,Plastic"
    return f"{tag},Irasus,In Warehouse,{model},Irasus,{location},{warranty},{specs}"


def _upload(  # type: ignore[no-untyped-def]
    client: TestClient,
    headers: dict,  # type: ignore[type-arg]
    lines: list[str],
    *,
    method: str = "POST",
    for_dealer: int | None = None,
    **params,  # type: ignore[no-untyped-def]
):
    """Send the rows as a CSV file (`for_dealer`: a dealer_id column, as an admin registers packs)."""
    if for_dealer is not None:
        lines = [HEADER + ",dealer_id", *(f"{line},{for_dealer}" for line in lines)]
    else:
        lines = [HEADER, *lines]
    data = ("\n".join(lines) + "\n").encode()
    return client.request(
        method,
        "/api/battery_pack",
        params=params,
        headers=headers,
        files={"file": ("packs.csv", data, "text/csv")},
    )


@pytest.fixture
def dealer(db: psycopg.Connection) -> dict:  # type: ignore[type-arg]
    return factories.user(db, "dealer")


@pytest.fixture
def admin(db: psycopg.Connection) -> dict:  # type: ignore[type-arg]
    """Packs are registered by an admin and allocated to a dealer (README: "Who registers batteries")."""
    return factories.user(db, "admin")


def _count(db: psycopg.Connection, tags: list[str]) -> int:
    return db.execute(
        "SELECT count(*) AS n FROM batteries WHERE serial_number = ANY(%s)", (tags,)
    ).fetchone()["n"]


def test_create_one_then_read_update_and_see_activity(client: TestClient, dealer: dict, admin: dict) -> None:  # type: ignore[type-arg]
    headers, tag = bearer(dealer), _tag()
    pack = {"asset_tag": tag, **SPEC_PACK, "dealer_id": dealer["dealer_id"]}
    created = client.post("/api/battery_pack", json=pack, headers=bearer(admin))
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in SPEC_PACK} == SPEC_PACK
    assert body["asset_tag"] == tag and body["dealer_id"] == dealer["dealer_id"] and body["allocations"] == []

    again = client.post("/api/battery_pack", json={"asset_tag": tag}, headers=bearer(admin))
    assert again.status_code == 409 and again.json()["code"] == "ASSET_EXISTS"
    by_dealer = client.post("/api/battery_pack", json={"asset_tag": _tag()}, headers=headers)
    assert by_dealer.status_code == 403

    patched = client.patch(
        f"/api/battery_pack/{tag}",
        json={"location": "Pune", "battery_pack": {"bms_type": "Hardware"}, "model": None},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    got = client.get(f"/api/battery_pack/{tag}", headers=headers).json()
    assert (
        got["location"] == "Pune" and got["battery_pack"]["bms_type"] == "Hardware" and got["model"] is None
    )
    assert got["battery_pack"]["battery_cell_chemistry"] == "Li-NMC"

    bad = client.patch(
        f"/api/battery_pack/{tag}", json={"asset_tag": "OTHER", "warranty_months": "x"}, headers=headers
    )
    assert bad.status_code == 400
    unknown = client.patch(f"/api/battery_pack/{tag}", json={"colour": "red"}, headers=headers)
    assert unknown.status_code == 400 and "colour" in unknown.json()["error"]

    activity = client.get(f"/api/battery_pack/{tag}/activity", headers=headers).json()
    assert [a["action"] for a in activity] == ["updated", "created"]
    assert activity[0]["actor"] == f"user:{dealer['id']}"
    assert set(activity[0]["detail"]["changes"]) == {"location", "bms_type", "model"}
    assert client.get(f"/api/batteries/{tag}/activity", headers=headers).json() == activity


def test_list_search_sort_filter_and_total(
    client: TestClient,
    dealer: dict,
    admin: dict,
    db: psycopg.Connection,  # type: ignore[type-arg]
) -> None:
    headers = bearer(dealer)
    tags = [_tag("L") for _ in range(6)]
    lines = [
        _csv_line(tags[i], model=f"Model {'ABC'[i % 3]}", location=["Delhi", "Pune"][i % 2], warranty=str(i))
        for i in range(6)
    ]
    assert _upload(client, bearer(admin), lines, for_dealer=dealer["dealer_id"]).status_code == 201
    consumer = factories.consumer(db, dealer["dealer_id"], "Zubin Owner")
    db.execute("UPDATE batteries SET owner_id = %s WHERE serial_number = %s", (consumer["id"], tags[4]))

    page = client.get(
        "/api/battery_pack", params={"limit": 4, "sort": "warranty_months", "order": "desc"}, headers=headers
    )
    assert page.status_code == 200 and page.headers["X-Total-Count"] == "6"
    assert [p["asset_tag"] for p in page.json()] == [tags[5], tags[4], tags[3], tags[2]]
    rest = client.get(
        "/api/battery_pack",
        params={"limit": 4, "offset": 4, "sort": "warranty_months", "order": "desc"},
        headers=headers,
    )
    assert [p["asset_tag"] for p in rest.json()] == [tags[1], tags[0]] and rest.headers[
        "X-Total-Count"
    ] == "6"

    pune = client.get("/api/battery_pack", params={"location": "pune"}, headers=headers)
    assert pune.headers["X-Total-Count"] == "3" and all(p["location"] == "Pune" for p in pune.json())
    model_b = client.get(
        "/api/battery_pack", params={"model_name": "Model B", "location": "Pune"}, headers=headers
    )
    assert [p["asset_tag"] for p in model_b.json()] == [tags[1]]
    by_owner = client.get("/api/battery_pack", params={"owner_name": "Zubin Owner"}, headers=headers)
    assert [p["asset_tag"] for p in by_owner.json()] == [tags[4]] and by_owner.json()[0][
        "owner_name"
    ] == "Zubin Owner"
    search = client.get("/api/battery_pack", params={"search": "zubin"}, headers=headers)
    assert [p["asset_tag"] for p in search.json()] == [tags[4]]
    search = client.get("/api/battery_pack", params={"search": tags[2][:8].lower()}, headers=headers)
    assert tags[2] in [p["asset_tag"] for p in search.json()]
    literal = client.get("/api/battery_pack", params={"search": "%"}, headers=headers)
    assert literal.json() == []  # wildcards are searched for literally

    bad_sort = client.get(
        "/api/battery_pack", params={"sort": "serial_number; DROP TABLE batteries"}, headers=headers
    )
    assert bad_sort.status_code == 400 and bad_sort.json()["code"] == "VALIDATION_ERROR"
    assert client.get("/api/battery_pack", params={"order": "sideways"}, headers=headers).status_code == 400
    for bad in ({"limit": "many"}, {"limit": 0}, {"offset": -1}, {"dealer_id": "x"}, {"search": "s" * 201}):
        answer = client.get("/api/battery_pack", params=bad, headers=headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == f"Invalid fields: {next(iter(bad))}"
        assert answer.json()["code"] == "VALIDATION_ERROR"
    for field in ("asset_tag", "owner_name", "health_score", "created_at", "status_label", "location"):
        sorted_page = client.get(
            "/api/battery_pack", params={"sort": field, "order": "DESC"}, headers=headers
        )
        assert sorted_page.status_code == 200 and len(sorted_page.json()) == 6
    by_owner_first = client.get("/api/battery_pack", params={"sort": "owner_name"}, headers=headers).json()
    assert by_owner_first[0]["asset_tag"] == tags[4]  # the one owned pack; unowned (NULL) sort last
    too_many = client.get("/api/battery_pack", params={"limit": 100000}, headers=headers)
    assert too_many.status_code == 400 and too_many.json()["error"] == "Invalid fields: limit"
    largest = client.get("/api/battery_pack", params={"limit": 500}, headers=headers)
    assert largest.status_code == 200 and len(largest.json()) == 6

    other = factories.user(db, "dealer")
    assert client.get("/api/battery_pack", headers=bearer(other)).headers["X-Total-Count"] == "0"


def test_csv_bad_rows_are_reported_and_nothing_is_written(
    client: TestClient, admin: dict, db: psycopg.Connection
) -> None:  # type: ignore[type-arg]
    headers = bearer(admin)
    good, dup = _tag(), _tag()
    lines = [
        _csv_line(good),
        _csv_line("bad tag!"),
        _csv_line(dup),
        _csv_line(_tag(), warranty="-1"),
        _csv_line(dup),
        "ONLYONECELL",
    ]
    answer = _upload(client, headers, lines)
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == "VALIDATION_ERROR" and body["failed"] == 4 and body["rows"] == 6
    report = {(e["row"], e["field"]) for e in body["details"]}
    assert report == {(2, "asset_tag"), (4, "warranty_months"), (5, "asset_tag"), (6, "row")}
    assert next(e for e in body["details"] if e["row"] == 5)["error"] == "duplicate of row 3"
    assert _count(db, [good, dup]) == 0

    partial = _upload(client, headers, lines, all_or_nothing="false")
    assert partial.status_code == 201 and partial.json()["created"] == 2 and partial.json()["failed"] == 4
    assert _count(db, [good, dup]) == 2

    header = client.post(
        "/api/battery_pack",
        headers=headers,
        files={"file": ("x.csv", b"asset_tag,colour\nA1,red\n", "text/csv")},
    )
    assert header.status_code == 400 and header.json()["details"]["unknown_columns"] == ["colour"]
    other_part = client.post(
        "/api/battery_pack",
        headers=headers,
        data={"dealer": "1"},
        files={"file": ("x.csv", b"asset_tag\nA1\n", "text/csv")},
    )
    assert other_part.status_code == 400 and other_part.json()["details"][0]["field"] == "dealer"


def test_existing_tags_are_409_and_dry_run_writes_nothing(
    client: TestClient, dealer: dict, admin: dict, db: psycopg.Connection
) -> None:  # type: ignore[type-arg]
    headers = bearer(admin)
    existing = factories.battery(db, dealer_id=dealer["dealer_id"])["serial_number"]
    other_dealers = factories.battery(db)["serial_number"]
    fresh = [_tag(), _tag()]
    answer = _upload(
        client,
        headers,
        [_csv_line(fresh[0]), _csv_line(existing), _csv_line(other_dealers), _csv_line(fresh[1])],
    )
    assert answer.status_code == 409
    assert answer.json()["code"] == "ASSET_EXISTS"
    assert [(e["row"], e["asset_tag"]) for e in answer.json()["details"]] == [
        (2, existing),
        (3, other_dealers),
    ]
    assert _count(db, fresh) == 0

    dry = _upload(client, headers, [_csv_line(t) for t in fresh], dry_run="true")
    assert dry.status_code == 200 and dry.json() == {
        **dry.json(),
        "dry_run": True,
        "created": 0,
        "valid": 2,
        "failed": 0,
    }
    assert _count(db, fresh) == 0
    dry_bad = _upload(client, headers, [_csv_line(existing)], dry_run="true")
    assert dry_bad.status_code == 409 and dry_bad.json()["dry_run"] is True
    mixed = _upload(client, headers, [_csv_line(existing), _csv_line("bad tag!")])
    assert mixed.status_code == 400  # every problem in one report: the taken tag and the bad one
    assert [(e["row"], e["field"]) for e in mixed.json()["details"]] == [(1, "asset_tag"), (2, "asset_tag")]
    assert "already exists" in mixed.json()["details"][0]["error"]

    real = client.post(
        "/api/battery_pack", json=[{"asset_tag": t, **SPEC_PACK} for t in fresh], headers=headers
    )
    assert real.status_code == 201 and real.json()["created"] == 2
    listed = client.get(f"/api/battery_pack/{fresh[1]}", headers=headers).json()
    assert listed["battery_pack"] == SPEC_PACK["battery_pack"]


def test_bulk_patch_from_csv_and_json(
    client: TestClient,
    dealer: dict,
    admin: dict,
    db: psycopg.Connection,  # type: ignore[type-arg]
) -> None:
    headers = bearer(dealer)
    tags = [_tag(), _tag()]
    lines = [_csv_line(t) for t in tags]
    assert _upload(client, bearer(admin), lines, for_dealer=dealer["dealer_id"]).status_code == 201
    data = b"asset_tag,location,status_label\n" + f"{tags[0]},Mumbai,\n{tags[1]},,In Vehicle\n".encode()
    answer = client.patch("/api/battery_pack", headers=headers, files={"file": ("u.csv", data, "text/csv")})
    assert answer.status_code == 200 and answer.json()["updated"] == 2, answer.text
    first, second = (client.get(f"/api/battery_pack/{t}", headers=headers).json() for t in tags)
    assert (first["location"], first["status_label"]) == ("Mumbai", "In Warehouse")
    assert (second["location"], second["status_label"]) == ("Delhi", "In Vehicle")

    foreign = factories.battery(db)["serial_number"]
    refused = client.patch(
        "/api/battery_pack",
        json=[{"asset_tag": tags[0], "model": "Y"}, {"asset_tag": foreign, "model": "Y"}],
        headers=headers,
    )
    assert refused.status_code == 404 and refused.json()["details"][0] == {
        "row": 2,
        "asset_tag": foreign,
        "field": "asset_tag",
        "error": "not found",
    }
    # A blank text in a JSON row is no value, as in a CSV; a blank number is no number (it was taken
    # as none, which the document did not allow: found by schemathesis).
    blank = client.patch(
        "/api/battery_pack",
        json=[{"asset_tag": tags[0], "location": " ", "health_score": ""}],
        headers=headers,
    )
    assert blank.status_code == 400 and blank.json()["details"][0]["field"] == "health_score", blank.text
    assert client.get(f"/api/battery_pack/{tags[0]}", headers=headers).json()["model"] == "Model X"
    activity = client.get(f"/api/battery_pack/{tags[0]}/activity", headers=headers).json()
    assert activity[0]["action"] == "updated" and activity[0]["detail"]["fields"] == ["location"]


def test_soft_delete_keeps_telemetry_and_leaves_lists(
    client: TestClient, dealer: dict, admin: dict, db: psycopg.Connection
) -> None:  # type: ignore[type-arg]
    headers = bearer(dealer)
    tags = [_tag("D") for _ in range(3)]
    lines = [_csv_line(t) for t in tags]
    assert _upload(client, bearer(admin), lines, for_dealer=dealer["dealer_id"]).status_code == 201
    battery_id = db.execute("SELECT id FROM batteries WHERE serial_number = %s", (tags[0],)).fetchone()["id"]
    db.execute(
        "INSERT INTO telemetry (battery_id, ts, voltage, current, soc) VALUES (%s, now(), 48, 1, 50)",
        (battery_id,),
    )

    one = client.delete(f"/api/battery_pack/{tags[0]}", headers=headers)
    assert one.status_code == 200
    assert (
        one.json()["status"] == "success" and one.json()["asset_tag"] == tags[0] and one.json()["deletedAt"]
    )
    assert client.get(f"/api/battery_pack/{tags[0]}", headers=headers).status_code == 404
    assert client.delete(f"/api/battery_pack/{tags[0]}", headers=headers).status_code == 404
    assert (
        db.execute("SELECT count(*) AS n FROM telemetry WHERE battery_id = %s", (battery_id,)).fetchone()["n"]
        == 1
    )

    missing = client.request(
        "DELETE", "/api/battery_pack", json={"asset_tags": [tags[1], "NOPE-" + tags[2]]}, headers=headers
    )
    assert missing.status_code == 404 and missing.json()["details"]["missing_asset_tags"] == [
        "NOPE-" + tags[2]
    ]
    group = client.request("DELETE", "/api/battery_pack", json={"asset_tags": tags[1:]}, headers=headers)
    assert group.status_code == 200 and group.json()["count"] == 2
    listed = client.get("/api/battery_pack", headers=headers)
    assert not {p["asset_tag"] for p in listed.json()} & set(tags)
    assert not {b["serial_number"] for b in client.get("/api/batteries", headers=headers).json()} & set(tags)
    again = _upload(client, bearer(admin), [_csv_line(tags[0])])
    assert again.status_code == 409 and "deleted" in again.json()["details"][0]["error"]


def test_allocation_history(client: TestClient, dealer: dict, admin: dict) -> None:  # type: ignore[type-arg]
    headers, tag = bearer(dealer), _tag("A")
    pack = {"asset_tag": tag, **SPEC_PACK, "dealer_id": dealer["dealer_id"]}
    assert client.post("/api/battery_pack", json=pack, headers=bearer(admin)).status_code == 201
    first = client.post(
        f"/api/battery_pack/{tag}/allocate",
        json={"target_category": "Vehicle", "target_individual": "DL01AB1234", "status_label": "In Vehicle"},
        headers=headers,
    )
    assert first.status_code == 200, first.text
    assert first.json()["status_label"] == "In Vehicle"
    second = client.post(
        f"/api/battery_pack/{tag}/allocate",
        json={"target_category": "Location", "target_individual": "Depot 7", "status_label": "In Warehouse"},
        headers=headers,
    ).json()
    assert second["allocation"]["target_individual"] == "Depot 7" and second["location"] == "Depot 7"
    history = second["allocations"]
    assert [a["target_category"] for a in history] == ["Location", "Vehicle"]
    assert history[0]["released_at"] is None and history[1]["released_at"] is not None
    bad = client.post(
        f"/api/battery_pack/{tag}/allocate",
        json={"target_category": "Moon", "target_individual": "x"},
        headers=headers,
    )
    assert bad.status_code == 400 and "target_category" in bad.json()["error"]
    actions = [a["action"] for a in client.get(f"/api/battery_pack/{tag}/activity", headers=headers).json()]
    assert actions == ["allocated", "allocated", "created"]


def test_fifty_thousand_rows_import_in_seconds(client: TestClient, db: psycopg.Connection, caplog) -> None:  # type: ignore[no-untyped-def]
    admin = factories.user(db, "admin")
    prefix = f"K{uuid.uuid4().hex[:6].upper()}"
    lines = [_csv_line(f"{prefix}{i:06d}") for i in range(50_000)]
    caplog.set_level(logging.INFO, logger="api.battery_packs.bulk")
    started = time.monotonic()
    answer = _upload(client, bearer(admin), lines)
    elapsed = time.monotonic() - started
    assert answer.status_code == 201, answer.text[:500]
    assert answer.json()["created"] == 50_000
    assert (
        db.execute(
            "SELECT count(*) AS n FROM batteries WHERE serial_number LIKE %s", (prefix + "%",)
        ).fetchone()["n"]
        == 50_000
    )
    progress = [r for r in caplog.records if "progress" in r.getMessage()]
    assert progress and progress[-1].rows_done == 50_000
    assert elapsed < 30, f"50,000 rows took {elapsed:.1f}s"
    # clean up so the shared database's lists stay small for the other tests
    db.execute(
        """DELETE FROM battery_activity
           WHERE battery_id IN (SELECT id FROM batteries WHERE serial_number LIKE %s)""",
        (prefix + "%",),
    )
    db.execute("DELETE FROM batteries WHERE serial_number LIKE %s", (prefix + "%",))


def test_empty_uploads_are_refused(client: TestClient, dealer: dict, admin: dict) -> None:  # type: ignore[type-arg]
    headers = bearer(admin)
    assert _upload(client, headers, []).status_code == 400
    assert client.post("/api/battery_pack", json=[], headers=headers).status_code == 400
    assert client.patch("/api/battery_pack", json=[], headers=bearer(dealer)).status_code == 400
    assert (
        client.post("/api/battery_pack", content=b"{not json", headers=headers).json()["error"]
        == "Invalid JSON"
    )


def test_lists_show_every_change_to_a_pack(client: TestClient, db: psycopg.Connection) -> None:
    """Lists read the stored pack objects (battery_pack_views): each kind of change must reach them,
    whoever makes it: the API, control (status), a consumer's new name, an allocation."""
    dealer_row = factories.dealer(db, "View Motors")
    dealer = factories.user(db, "dealer", dealer_id=dealer_row["id"])
    admin = factories.user(db, "admin")
    consumer = factories.consumer(db, dealer_row["id"], "Ravi R")
    headers, tag = bearer(dealer), _tag("V")

    def listed() -> dict:  # type: ignore[type-arg]
        page = client.get("/api/battery_pack", params={"search": tag}, headers=headers)
        assert page.status_code == 200 and page.headers["X-Total-Count"] == "1", page.text
        (pack,) = page.json()
        detail = client.get(f"/api/battery_pack/{tag}", headers=headers).json()
        # the same object (times compared as times: the list's text comes from PostgreSQL)
        assert BatteryPack.model_validate(pack) == BatteryPack.model_validate(
            {k: v for k, v in detail.items() if k != "allocations"}
        )
        return pack  # type: ignore[no-any-return]

    pack = {"asset_tag": tag, **SPEC_PACK, "dealer_id": dealer_row["id"]}
    assert client.post("/api/battery_pack", json=pack, headers=bearer(admin)).status_code == 201
    assert listed()["model"] == "Model X" and listed()["allocation"] is None
    assert (
        client.patch(
            "/api/battery_pack", json=[{"asset_tag": tag, "model": "Model Y"}], headers=headers
        ).status_code
        == 200
    )
    assert listed()["model"] == "Model Y"
    client.post(
        f"/api/battery_pack/{tag}/allocate",
        json={"target_category": "Vehicle", "target_individual": "KA01X1", "status_label": "In Vehicle"},
        headers=headers,
    )
    assert listed()["allocation"]["target_individual"] == "KA01X1"
    assigned = client.put(
        f"/api/batteries/{tag}/assign", json={"consumer_id": consumer["id"]}, headers=headers
    )
    assert assigned.status_code == 200, assigned.text
    assert listed()["owner_name"] == "Ravi R"
    db.execute("UPDATE consumers SET name = 'Ravi Kumar' WHERE id = %s", (consumer["id"],))
    assert listed()["owner_name"] == "Ravi Kumar"
    db.execute("UPDATE batteries SET status = 'inactive' WHERE serial_number = %s", (tag,))  # as control does
    assert listed()["status"] == "inactive"
    db.execute(
        """DELETE FROM battery_allocations
           WHERE battery_id = (SELECT id FROM batteries WHERE serial_number = %s)""",
        (tag,),
    )
    assert listed()["allocation"] is None
    db.execute(
        "UPDATE batteries SET last_seen_at = now(), online = true WHERE serial_number = %s", (tag,)
    )  # as ingest
    assert listed()["status"] == "inactive"


def test_times_are_utc_whatever_the_servers_zone(fresh_database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import dict_row

    from api.app import create_app
    from tests.api.conftest import api_settings

    name = conninfo_to_dict(fresh_database_url)["dbname"]
    with psycopg.connect(fresh_database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'Asia/Kolkata'").format(sql.Identifier(name)))
        admin = factories.user(conn, "admin")
    tag = _tag("Z")
    with TestClient(create_app(api_settings(fresh_database_url, tmp_path / "documents"))) as client:
        headers = bearer(admin)
        assert (
            client.post(
                "/api/battery_pack", json={"asset_tag": tag, **SPEC_PACK}, headers=headers
            ).status_code
            == 201
        )
        (listed,) = client.get("/api/battery_pack", headers=headers).json()
        detail = client.get(f"/api/battery_pack/{tag}", headers=headers).json()
        battery = client.get(f"/api/batteries/{tag}", headers=headers).json()["battery"]
    for when in (listed["created_at"], listed["updated_at"], detail["updated_at"], battery["created_at"]):
        assert when.endswith("Z") and "+05:30" not in when, when


def test_one_pack_dry_run_and_what_an_update_cannot_clear(
    client: TestClient, dealer: dict, admin: dict
) -> None:  # type: ignore[type-arg]
    """`?dry_run=true` on one pack was a 400 the document did not mention: it is checked as a
    one-row bulk creation, nothing written. The health score and the dealer cannot be cleared,
    and the document now says so (no null in their update schema)."""
    tag = _tag()
    pack = {"asset_tag": tag, **SPEC_PACK, "dealer_id": dealer["dealer_id"]}
    dry = client.post("/api/battery_pack", params={"dry_run": "true"}, json=pack, headers=bearer(admin))
    assert dry.status_code == 200 and dry.json()["dry_run"] is True and dry.json()["rows"] == 1, dry.text
    assert client.get(f"/api/battery_pack/{tag}", headers=bearer(admin)).status_code == 404
    assert client.post("/api/battery_pack", json=pack, headers=bearer(admin)).status_code == 201
    update = document()["components"]["schemas"]["BatteryPackUpdate"]["properties"]
    for field in ("health_score", "dealer_id"):
        assert {"type": "null"} not in update[field].get("anyOf", ()) and "default" not in update[field]
        cleared = client.patch(f"/api/battery_pack/{tag}", json={field: None}, headers=bearer(admin))
        assert cleared.status_code == 400 and field in cleared.json()["error"], cleared.text


def test_another_asset_tag_in_an_update_is_a_409(client: TestClient, admin: dict) -> None:  # type: ignore[type-arg]
    """A well-formed asset_tag that is not the pack's was a 400 for a documented-valid body: it
    conflicts with the pack's own tag, a 409 (declared on the route)."""
    tag = _tag()
    assert (
        client.post(
            "/api/battery_pack", json={"asset_tag": tag, **SPEC_PACK}, headers=bearer(admin)
        ).status_code
        == 201
    )
    answer = client.patch(f"/api/battery_pack/{tag}", json={"asset_tag": _tag()}, headers=bearer(admin))
    assert answer.status_code == 409 and answer.json()["error"] == "asset_tag is the pack's", answer.text
    assert "409" in document()["paths"]["/api/battery_pack/{i}"]["patch"]["responses"]
    same = client.patch(
        f"/api/battery_pack/{tag}", json={"asset_tag": tag, "location": "Pune"}, headers=bearer(admin)
    )
    assert same.status_code == 200 and same.json()["location"] == "Pune", same.text
