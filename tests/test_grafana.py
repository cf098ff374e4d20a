"""The Grafana dashboard in deploy/: every panel's SQL runs, as the read-only role, on a migrated
database with demo data; its Prometheus queries name metrics the services export; the provisioning
and docker-compose.yml fit together."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from prometheus_client import REGISTRY

import control.metrics  # noqa: F401 - registers the metrics the dashboard reads
import ingest.metrics  # noqa: F401
from packfleet.demo import seed_demo
from tests.api.telemetry.conftest import series, store

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = json.loads((REPO / "deploy/grafana/dashboards/fleet.json").read_text())
SQL_PANELS = [(p["title"], t["rawSql"]) for p in DASHBOARD["panels"] for t in p["targets"] if "rawSql" in t]
FINANCE_TABLES = ("loans", "loan_instalments")


def _grafana_sql(sql: str, start: datetime, end: datetime) -> str:
    """The query as Grafana sends it: its time macros expanded."""
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'", sql
    )
    assert "$__" not in sql, f"a macro the test does not expand: {sql}"
    return sql


@pytest.fixture(scope="module")
def demo_database(admin_url: str) -> Iterator[str]:
    from tests import services

    url = services.create_database(admin_url)
    with psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        serials = seed_demo(conn, batteries=6)
        ids = [
            r["id"]
            for r in conn.execute("SELECT id FROM batteries WHERE serial_number = ANY(%s)", (serials,))
        ]
        start = datetime.now(UTC) - timedelta(hours=5)
        with conn.transaction():
            for battery_id in ids:
                store(conn, series(battery_id, start, 240))
        conn.execute(
            """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc, lat, lon)
               SELECT battery_id, max(ts), 48, 1, 55, 12.97, 77.59 FROM telemetry GROUP BY battery_id"""
        )
        conn.execute("UPDATE batteries SET online = true WHERE id = ANY(%s)", (ids[:4],))
        for status in ("succeeded", "succeeded", "failed", "queued"):
            conn.execute(
                """INSERT INTO commands (id, battery_id, action, reason, status, expires_at)
                   VALUES (%s, %s, 'disable', 'grafana test', %s, now() + interval '1 day')""",
                (uuid.uuid4(), ids[0], status),
            )
    yield url
    services.drop_database(admin_url, url)


@pytest.mark.parametrize(("title", "sql"), SQL_PANELS, ids=[t for t, _ in SQL_PANELS])
def test_every_panel_query_runs_as_the_read_only_role(demo_database: str, title: str, sql: str) -> None:
    with psycopg.connect(demo_database) as conn:
        missing = [
            t
            for t in FINANCE_TABLES
            if t in sql and conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is None
        ]
        if missing:
            pytest.skip(f"finance's tables ({', '.join(missing)}) are not in this schema yet")
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SET ROLE packfleet_grafana")
        now = datetime.now(UTC)
        rows = conn.execute(_grafana_sql(sql, now - timedelta(hours=24), now)).fetchall()
    if not missing and "loan" not in sql:
        assert rows, f"{title}: no rows from the demo data"


def test_the_read_only_role_cannot_read_people_or_write(demo_database: str) -> None:
    with psycopg.connect(demo_database) as conn:
        conn.execute("SET ROLE packfleet_grafana")
        for statement in ("SELECT * FROM users", "SELECT * FROM consumers", "DELETE FROM batteries"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with conn.transaction():
                    conn.execute(statement)


def test_prometheus_panels_name_exported_metrics() -> None:
    exported = {s.name for metric in REGISTRY.collect() for s in metric.samples}
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b((?:ingest|packfleet)_\w+)\b", target.get("expr", "")):
                assert name in exported, f"{panel['title']}: {name} is not a metric the services export"


def test_provisioning_and_compose_fit_together() -> None:
    sources = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/packfleet.yml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}
    used = {t["datasource"]["uid"] for p in DASHBOARD["panels"] for t in p["targets"]}
    assert used <= uids
    assert (
        next(s for s in sources["datasources"] if s["uid"] == "packfleet-db")["user"] == "packfleet_grafana"
    )
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for service in ("grafana", "prometheus", "grafana-db-user"):
        assert service in compose["services"]
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and "passwd" not in source:
                assert (REPO / source).exists(), source
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
