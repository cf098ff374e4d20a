"""Versioned schema migrations, applied in order by `packfleet migrate`.

A migration is `migrations/NNNN_name.sql`, optionally followed by a variant that runs only on one
storage path: `NNNN_name.timescale.sql` when the TimescaleDB extension could be created,
`NNNN_name.plain.sql` when it could not. Each version runs in one transaction, unless its file
starts with `-- packfleet:no-transaction`, in which case its statements (separated by a `;` at the
end of a line) run one by one in autocommit mode (TimescaleDB's continuous aggregates need that).
Applied versions are recorded in `schema_migrations`; an advisory lock lets many processes call
`migrate` at once safely.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|plain))?\.sql$")
_LOCK_KEY = 0x7061636B  # "pack"
_NO_TX = "-- packfleet:no-transaction"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    common: str | None
    timescale: str | None
    plain: str | None


class MigrationError(RuntimeError):
    """A migration file is malformed or failed to apply."""


def discover() -> list[Migration]:
    """All migrations shipped with the package, in version order."""
    found: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    for entry in resources.files("packfleet.migrations").iterdir():
        match = _FILE.match(entry.name)
        if not match:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"badly named migration file: {entry.name}")
            continue
        version, name, variant = int(match[1]), match[2], match[3] or "common"
        if names.setdefault(version, name) != name:
            raise MigrationError(f"two names for migration {version}: {names[version]}, {name}")
        found.setdefault(version, {})[variant] = entry.read_text(encoding="utf-8")
    return [
        Migration(v, names[v], f.get("common"), f.get("timescale"), f.get("plain"))
        for v, f in sorted(found.items())
    ]


def _enable_timescale(conn: psycopg.Connection) -> bool:
    """Create the TimescaleDB extension if the server has it; say whether it is there."""
    row = conn.execute(
        "SELECT installed_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        return False
    if _value(row) is not None:
        return True
    # Without preloading, CREATE EXTENSION fails and can take the connection down with it.
    preload = _value(conn.execute("SHOW shared_preload_libraries").fetchone())
    if "timescaledb" not in str(preload):
        log.warning("timescaledb is installed but not in shared_preload_libraries: using plain tables")
        return False
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:  # not in shared_preload_libraries, or not permitted
        log.warning("timescaledb is available but could not be created: %s", exc)
        return False
    return True


def has_timescale(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def _value(row: object) -> object:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]  # type: ignore[index]


def _run(conn: psycopg.Connection, sql: str) -> None:
    if sql.lstrip().startswith(_NO_TX):
        for statement in re.split(r";\s*$", sql, flags=re.MULTILINE):
            if statement.strip() and not all(
                line.strip().startswith("--") or not line.strip() for line in statement.splitlines()
            ):
                conn.execute(statement)
    else:
        with conn.transaction():
            conn.execute(sql)


def migrate(url: str) -> list[str]:
    """Apply every pending migration to the database at `url`; return the names applied."""
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       storage text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            pending = [m for m in discover() if m.version not in done]
            if not pending:
                return applied_now
            timescale = _enable_timescale(conn)
            storage = "timescale" if timescale else "plain"
            for m in pending:
                label = f"{m.version:04d}_{m.name}"
                log.info("applying migration %s (%s)", label, storage)
                try:
                    for sql in (m.common, m.timescale if timescale else m.plain):
                        if sql:
                            _run(conn, sql)
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {label} failed: {exc}") from exc
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, storage) VALUES (%s, %s, %s)",
                    (m.version, m.name, storage),
                )
                applied_now.append(label)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
