"""Migrations: applied in order, once, on plain PostgreSQL or TimescaleDB alike."""

import psycopg
import pytest

from packfleet import migrate as migrate_module
from packfleet.migrate import discover, migrate
from tests import services


def test_migrations_are_versioned_and_contiguous() -> None:
    versions = [m.version for m in discover()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


def test_migrate_is_idempotent_and_records_versions(fresh_database_url: str) -> None:
    # The fixture already migrated; a second run applies nothing and changes nothing.
    assert migrate(fresh_database_url) == []
    with psycopg.connect(fresh_database_url) as conn:
        recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        storage = {r[0] for r in conn.execute("SELECT storage FROM schema_migrations")}
        timescale = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    assert recorded == [m.version for m in discover()]
    assert storage == {"timescale" if timescale else "plain"}


def test_plain_storage_has_brin_and_primary_key(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
            pytest.skip("TimescaleDB is installed: the plain layout is not used")
        indexes = {
            r[0]: r[1]
            for r in conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'telemetry'")
        }
    assert any("brin" in d for d in indexes.values())
    assert any("(battery_id, ts)" in d for d in indexes.values())


def test_timescale_storage_is_a_daily_hypertable(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
            pytest.skip("TimescaleDB is not available on this server: the plain layout is used")
        interval = conn.execute(
            """SELECT time_interval FROM timescaledb_information.dimensions
               WHERE hypertable_name = 'telemetry' AND column_name = 'ts'"""
        ).fetchone()
    assert interval is not None and interval[0].days == 1


def test_a_charging_cut_made_before_0036_is_not_awaiting_confirmation(
    admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = services.create_database(admin_url, migrated=False)
    try:
        every = discover()
        monkeypatch.setattr(migrate_module, "discover", lambda: [m for m in every if m.version <= 35])
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            # The old code: a disable set `status` at once; the devices confirmed each one.
            conn.execute(
                """INSERT INTO batteries (serial_number, status, desired_enabled, desired_spec,
                                          reported_enabled, reported_spec)
                   VALUES ('CUT', 'inactive', false, 'charging', false, 'charging'),
                          ('OFF', 'inactive', false, 'both', false, 'both'),
                          ('SERVICE', 'maintenance', false, 'discharging', false, 'discharging'),
                          ('ON', 'active', true, 'charging', true, 'charging')"""
            )
        monkeypatch.setattr(migrate_module, "discover", lambda: every)
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT serial_number, status, desired_status FROM batteries").fetchall()
            assert sorted(rows) == [
                ("CUT", "active", "active"),
                ("OFF", "inactive", "inactive"),
                ("ON", "active", "active"),
                ("SERVICE", "maintenance", "maintenance"),
            ]
            [fix] = [m.common for m in every if m.version == 38]
            assert conn.execute(fix or "").rowcount == 0  # run again: nothing changes
    finally:
        services.drop_database(admin_url, url)
