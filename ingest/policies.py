"""TimescaleDB compression and retention of telemetry, set to the configured intervals.

Migration 0010 creates both policies with the settings' default intervals (migrations are plain
SQL); the worker calls `apply_policies` at start so that PACKFLEET_TELEMETRY_COMPRESS_AFTER and
PACKFLEET_TELEMETRY_RETENTION take effect. On plain PostgreSQL it does nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

log = logging.getLogger(__name__)

_LOCK_KEY = 0x696E6770  # "ingp": workers starting together change the policies one at a time

_CURRENT = """
SELECT proc_name, config
FROM timescaledb_information.jobs
WHERE hypertable_schema = current_schema() AND hypertable_name = 'telemetry'
  AND proc_name IN ('policy_compression', 'policy_retention')
"""


def apply_policies(conn: psycopg.Connection[Any], *, compress_after: str, retention: str) -> list[str]:
    """Make telemetry's policies use these intervals; return what changed (commits)."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None:
        return []
    changed: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        current = {row[0]: row[1] for row in conn.execute(_CURRENT)}
        if not _same(conn, current.get("policy_compression"), "compress_after", compress_after):
            conn.execute("SELECT remove_compression_policy('telemetry', if_exists => true)")
            conn.execute(
                "SELECT add_compression_policy('telemetry', compress_after => %s::interval)",
                (compress_after,),
            )
            changed.append(f"compress_after={compress_after}")
        if not _same(conn, current.get("policy_retention"), "drop_after", retention):
            conn.execute("SELECT remove_retention_policy('telemetry', if_exists => true)")
            conn.execute("SELECT add_retention_policy('telemetry', drop_after => %s::interval)", (retention,))
            changed.append(f"retention={retention}")
    if changed:
        log.info("telemetry policies updated", extra={"changed": changed})
    return changed


def _same(conn: psycopg.Connection[Any], config: dict[str, Any] | None, key: str, wanted: str) -> bool:
    if not config or key not in config:
        return False
    row = conn.execute("SELECT %s::interval = %s::interval", (str(config[key]), wanted)).fetchone()
    return bool(row and row[0])
