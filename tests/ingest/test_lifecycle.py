"""Telemetry's lifecycle: TimescaleDB compression, retention and hourly rollup; the plain view otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from ingest.policies import apply_policies


@pytest.fixture
def conn(fresh_database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(fresh_database_url, autocommit=True) as c:
        yield c


def _timescale(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is not None


@pytest.fixture
def timescale(conn: psycopg.Connection) -> psycopg.Connection:
    if not _timescale(conn):
        pytest.skip(
            "TimescaleDB is not loaded on this server (shared_preload_libraries): the plain layout is used"
        )
    return conn


def _jobs(conn: psycopg.Connection) -> dict[str, dict]:
    return dict(
        conn.execute(
            "SELECT proc_name, config FROM timescaledb_information.jobs WHERE hypertable_name = 'telemetry'"
        ).fetchall()
    )


def _insert(conn: psycopg.Connection) -> None:
    conn.execute(
        """INSERT INTO telemetry (battery_id, ts, voltage, current, soc, temperature) VALUES
           (7, '2026-01-01 10:05+00', 48, 1, 50, 30), (7, '2026-01-01 10:55+00', 50, 3, 40, 32),
           (7, '2026-01-01 11:10+00', 49, 2, 39, NULL)"""
    )


@pytest.mark.timescale
def test_migrations_set_compression_retention_and_an_hourly_aggregate(timescale: psycopg.Connection) -> None:
    jobs = _jobs(timescale)
    assert jobs["policy_compression"]["compress_after"] == "7 days"
    assert jobs["policy_retention"]["drop_after"] == "365 days"
    segment = timescale.execute(
        """SELECT attname FROM timescaledb_information.compression_settings
           WHERE hypertable_name = 'telemetry' AND segmentby_column_index = 1"""
    ).fetchone()
    assert segment == ("battery_id",)
    refresh = timescale.execute(
        "SELECT 1 FROM timescaledb_information.jobs WHERE proc_name = 'policy_refresh_continuous_aggregate'"
    ).fetchone()
    assert refresh is not None


@pytest.mark.timescale
def test_policies_follow_the_settings(timescale: psycopg.Connection) -> None:
    assert apply_policies(timescale, compress_after="7 days", retention="365 days") == []
    changed = apply_policies(timescale, compress_after="2 days", retention="90 days")
    assert changed == ["compress_after=2 days", "retention=90 days"]
    jobs = _jobs(timescale)
    assert (jobs["policy_compression"]["compress_after"], jobs["policy_retention"]["drop_after"]) == (
        "2 days",
        "90 days",
    )
    assert apply_policies(timescale, compress_after="48 hours", retention="90 days") == []


def test_policies_do_nothing_on_plain_postgresql(conn: psycopg.Connection) -> None:
    if _timescale(conn):
        pytest.skip("TimescaleDB is loaded: the plain path is not used")
    assert apply_policies(conn, compress_after="1 day", retention="2 days") == []


def test_hourly_rollup_answers_on_either_storage(conn: psycopg.Connection) -> None:
    _insert(conn)
    if _timescale(conn):
        conn.execute("CALL refresh_continuous_aggregate('telemetry_hourly', NULL, NULL)")
    rows = conn.execute(
        """SELECT to_char(bucket AT TIME ZONE 'UTC', 'HH24:MI'), readings, voltage_avg, soc_min,
                  temperature_max FROM telemetry_hourly WHERE battery_id = 7 ORDER BY bucket"""
    ).fetchall()
    assert rows == [("10:00", 2, 49.0, 40.0, 32.0), ("11:00", 1, 49.0, 39.0, None)]
