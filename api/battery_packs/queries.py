"""SQL for battery packs (rows of `batteries`), their allocations and bulk staging.

Functions take `conn` first and never commit. Dynamic SQL is built only from the constant
allow-lists in models.py; every value is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection, sql

from api.battery_packs.models import COLUMNS, SORTS

# The battery-pack object of the API, built by PostgreSQL: the fields that change with commands
# (status as the device confirmed it, desired_status as asked, updated_at) from the row, then the
# rest as kept in battery_pack_views (migration 0033, battery_pack_tails). Lists pass the text
# through Python untouched. (to_json, not to_char, for the time: to_char was a third of a page's
# cost; sessions are UTC, packfleet/db.py.)
PACK_BODY = """'{"status":' || to_json(b.status)::text
    || ',"desired_status":' || to_json(b.desired_status)::text
    || ',"updated_at":' || replace(to_json(b.updated_at)::text, '+00:00"', 'Z"') || ',' || v.tail"""

PACK_FROM = """
    FROM batteries b
    JOIN battery_pack_views v ON v.battery_id = b.id
    LEFT JOIN consumers c ON c.id = b.owner_id
"""

# One constant condition per filter; only the filters in use are joined into the WHERE clause, so the
# planner sees e.g. `b.dealer_id = $1` (index) rather than `($1 IS NULL OR b.dealer_id = $1)` per row.
_CONDITIONS = {
    "dealer": "b.dealer_id = %(dealer)s",
    "owner": "b.owner_id = %(owner)s",
    "model": "lower(b.model) = lower(%(model)s)",
    "manufacturer": "lower(b.manufacturer_name) = lower(%(manufacturer)s)",
    "owner_name": "lower(c.name) = lower(%(owner_name)s)",
    "location": "lower(b.location) = lower(%(location)s)",
    "status_label": "lower(b.status_label) = lower(%(status_label)s)",
    "search": """(b.serial_number ILIKE %(search)s OR b.model ILIKE %(search)s
                  OR b.manufacturer_name ILIKE %(search)s OR c.name ILIKE %(search)s
                  OR b.location ILIKE %(search)s)""",
}
_NEEDS_CONSUMER = {"owner_name", "search"}


def _where(params: dict[str, Any]) -> str:
    used = [_CONDITIONS[name] for name, value in params.items() if name in _CONDITIONS and value is not None]
    return " AND ".join(["b.deleted_at IS NULL", *used])


def _like(term: str | None) -> str | None:
    if not term:
        return None
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_packs(
    conn: AsyncConnection,
    *,
    dealer_id: int | None,
    owner_id: int | None,
    filters: dict[str, str | None],
    search: str | None,
    sort: str,
    descending: bool,
    limit: int,
    offset: int,
) -> tuple[str, int]:
    """One page of live packs as a JSON array (text, built by PostgreSQL) and the total that match."""
    params = {"dealer": dealer_id, "owner": owner_id, "search": _like(search), **filters}
    where = _where(params)
    if all(value is None for name, value in params.items() if name != "dealer"):
        # All live packs, or a dealer's: the kept counts answer (migration 0034).
        counting = "SELECT coalesce(sum(live), 0) FROM battery_live_counts"
        if dealer_id is not None:
            counting += " WHERE dealer_key = %(dealer)s"
    else:
        needs_consumer = any(params[k] is not None for k in _NEEDS_CONSUMER)  # as _where decides
        join = "LEFT JOIN consumers c ON c.id = b.owner_id" if needs_consumer else ""
        counting = f"SELECT count(*) FROM batteries b {join} WHERE {where}"  # noqa: S608 - constant fragments
    direction = "DESC" if descending else "ASC"
    order = f"{SORTS[sort]} {direction} NULLS LAST, b.id {direction}"
    # One round trip and one row: the page's stored objects joined into an array, and the total.
    # (Not count(*) OVER (): the page walks an index and stops after `limit` rows.)
    cur = await conn.execute(
        f"""SELECT coalesce('[' || string_agg(p.body, ',' ORDER BY p.n) || ']', '[]') AS page,
                   ({counting}) AS total
            FROM (SELECT {PACK_BODY} AS body, row_number() OVER (ORDER BY {order}) AS n {PACK_FROM}
                  WHERE {where} ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s) p""",  # noqa: S608 - constant fragments
        {**params, "limit": limit, "offset": offset},  # type: ignore[arg-type]
    )
    found = await cur.fetchone()
    assert found is not None  # an aggregate always answers one row
    return found["page"], found["total"]


async def get_pack(conn: AsyncConnection, battery_id: int) -> dict[str, Any] | None:
    """The pack's row as stored."""
    cur = await conn.execute("SELECT * FROM batteries WHERE id = %s", (battery_id,))
    return await cur.fetchone()


async def pack_json(conn: AsyncConnection, battery_id: int) -> dict[str, Any] | None:
    """The pack as the API shows it."""
    cur = await conn.execute(
        f"SELECT ({PACK_BODY})::json AS pack {PACK_FROM} WHERE b.id = %s",
        (battery_id,),
    )
    row = await cur.fetchone()
    return None if row is None else row["pack"]


async def update_pack(conn: AsyncConnection, battery_id: int, values: dict[str, Any]) -> None:
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column)) for column in values
    )
    await conn.execute(
        sql.SQL("UPDATE batteries SET {}, updated_at = now() WHERE id = {}").format(
            assignments, sql.Placeholder("_id")
        ),
        {**values, "_id": battery_id},
    )


async def live_by_tags(conn: AsyncConnection, tags: Sequence[str]) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT id, serial_number, dealer_id, owner_id FROM batteries
           WHERE serial_number = ANY(%s) AND deleted_at IS NULL""",
        (list(tags),),
    )
    return await cur.fetchall()


async def soft_delete(conn: AsyncConnection, battery_ids: Sequence[int], *, actor: str) -> Any:
    """Mark the batteries deleted (telemetry stays); return the deletion time."""
    # The live counts of their dealers change row by row: lock them first, in the order every
    # writer uses, so that two deletions over the same dealers cannot deadlock.
    await conn.execute(
        """SELECT 1 FROM battery_live_counts
           WHERE dealer_key IN (SELECT coalesce(dealer_id, 0) FROM batteries WHERE id = ANY(%s))
           ORDER BY dealer_key FOR UPDATE""",
        (list(battery_ids),),
    )
    cur = await conn.execute(
        """WITH gone AS (
               UPDATE batteries SET deleted_at = now(), updated_at = now()
               WHERE id = ANY(%(ids)s) AND deleted_at IS NULL RETURNING id, deleted_at)
           INSERT INTO battery_activity (battery_id, actor, action)
           SELECT id, %(actor)s, 'deleted' FROM gone RETURNING at""",
        {"ids": list(battery_ids), "actor": actor},
    )
    rows = await cur.fetchall()
    return rows[0]["at"] if rows else None


async def lock_pack(conn: AsyncConnection, battery_id: int) -> None:
    """Hold the pack's row until commit, so concurrent changes to it happen one after the other."""
    await conn.execute("SELECT 1 FROM batteries WHERE id = %s FOR UPDATE", (battery_id,))


async def release_allocation(conn: AsyncConnection, battery_id: int) -> None:
    await conn.execute(
        "UPDATE battery_allocations SET released_at = now() WHERE battery_id = %s AND released_at IS NULL",
        (battery_id,),
    )


async def insert_allocation(
    conn: AsyncConnection,
    *,
    battery_id: int,
    target_category: str,
    target_individual: str,
    status_label: str | None,
    actor: str,
) -> None:
    await conn.execute(
        """INSERT INTO battery_allocations
               (battery_id, target_category, target_individual, status_label, allocated_by)
           VALUES (%s, %s, %s, %s, %s)""",
        (battery_id, target_category, target_individual, status_label, actor),
    )


async def allocations(conn: AsyncConnection, battery_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT id, target_category, target_individual, status_label, allocated_by, allocated_at,
                  released_at
           FROM battery_allocations WHERE battery_id = %s ORDER BY allocated_at DESC, id DESC""",
        (battery_id,),
    )
    return await cur.fetchall()


# --- bulk: rows go through a temporary staging table filled by COPY -------------------------------

STAGE_COLUMNS = ("row_no", *COLUMNS)


# Bulk writes take this transaction-level lock: two imports over the same tags would otherwise lock
# rows in different orders and deadlock; one after the other, the second gets a per-row 409 report.
_BULK_LOCK = 0x7061636B01


async def lock_bulk(conn: AsyncConnection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BULK_LOCK,))


async def create_stage(conn: AsyncConnection) -> None:
    await conn.execute(
        """CREATE TEMP TABLE pack_stage (
               row_no integer PRIMARY KEY, serial_number text NOT NULL, company text, status_label text,
               model text, manufacturer_name text, location text, warranty_months integer,
               cell_chemistry text, nominal_voltage text, nominal_capacity text, bms_type text,
               cell_type text, casing text, health_score numeric(5, 2), dealer_id bigint
           ) ON COMMIT DROP"""
    )


async def copy_stage(conn: AsyncConnection, rows: Iterable[tuple[Any, ...]]) -> int:
    count = 0
    async with conn.cursor() as cur:
        columns = sql.SQL(", ").join(map(sql.Identifier, STAGE_COLUMNS))
        async with cur.copy(sql.SQL("COPY pack_stage ({}) FROM STDIN").format(columns)) as copy:
            for row in rows:
                await copy.write_row(row)
                count += 1
    return count


async def stage_conflicts(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Staged rows whose asset tag is taken (deleted packs keep their tag: telemetry refers to it)."""
    cur = await conn.execute(
        """SELECT s.row_no, s.serial_number, b.deleted_at IS NOT NULL AS deleted
           FROM pack_stage s JOIN batteries b USING (serial_number) ORDER BY s.row_no"""
    )
    return await cur.fetchall()


async def stage_unknown_dealers(conn: AsyncConnection) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT s.row_no, s.serial_number, s.dealer_id FROM pack_stage s
           WHERE s.dealer_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM dealers d WHERE d.id = s.dealer_id)
           ORDER BY s.row_no"""
    )
    return await cur.fetchall()


async def insert_from_stage(conn: AsyncConnection, *, actor: str, source: str) -> int:
    """Insert the staged packs (skipping taken tags) with a `created` activity row each."""
    columns = ", ".join(COLUMNS)
    values = ", ".join("coalesce(s.health_score, 100)" if c == "health_score" else f"s.{c}" for c in COLUMNS)
    cur = await conn.execute(
        f"""WITH ins AS (
                INSERT INTO batteries ({columns})
                SELECT {values} FROM pack_stage s ORDER BY s.row_no
                ON CONFLICT (serial_number) DO NOTHING RETURNING id)
            INSERT INTO battery_activity (battery_id, actor, action, detail)
            SELECT id, %(actor)s, 'created', jsonb_build_object('source', %(source)s::text) FROM ins""",  # noqa: S608
        {"actor": actor, "source": source},
    )
    return cur.rowcount


async def update_from_stage(conn: AsyncConnection, *, actor: str, source: str) -> int:
    """Apply staged values over live packs (an empty cell leaves the field as it is)."""
    updatable = [c for c in COLUMNS if c not in ("serial_number", "dealer_id")]
    sets = ", ".join(f"{c} = coalesce(s.{c}, b.{c})" for c in updatable)
    changed = ", ".join(f"'{c}', s.{c} IS NOT NULL" for c in updatable)
    cur = await conn.execute(
        f"""WITH upd AS (
                UPDATE batteries b SET {sets}, updated_at = now()
                FROM pack_stage s WHERE b.serial_number = s.serial_number AND b.deleted_at IS NULL
                RETURNING b.id, jsonb_build_object({changed}) AS fields)
            INSERT INTO battery_activity (battery_id, actor, action, detail)
            SELECT id, %(actor)s, 'updated',
                   jsonb_build_object('source', %(source)s::text, 'fields',
                       (SELECT coalesce(jsonb_agg(key ORDER BY key), '[]') FROM jsonb_each(fields)
                        WHERE value = 'true'))
            FROM upd""",  # noqa: S608
        {"actor": actor, "source": source},
    )
    return cur.rowcount


async def insert_pack(conn: AsyncConnection, values: dict[str, Any]) -> int | None:
    """Insert one pack; its id, or None when the asset tag is taken."""
    columns = list(values)
    cur = await conn.execute(
        sql.SQL(
            "INSERT INTO batteries ({}) VALUES ({}) ON CONFLICT (serial_number) DO NOTHING RETURNING id"
        ).format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
        ),
        values,
    )
    row = await cur.fetchone()
    return None if row is None else row["id"]


async def dealer_exists(conn: AsyncConnection, dealer_id: int) -> bool:
    cur = await conn.execute("SELECT 1 FROM dealers WHERE id = %s", (dealer_id,))
    return await cur.fetchone() is not None


async def live_tags(conn: AsyncConnection, tags: Sequence[str], *, dealer_id: int | None) -> set[str]:
    """Which of these tags are live packs (of this dealer, when given)."""
    cur = await conn.execute(
        """SELECT serial_number FROM batteries
           WHERE serial_number = ANY(%s) AND deleted_at IS NULL AND (%s::bigint IS NULL OR dealer_id = %s)""",
        (list(tags), dealer_id, dealer_id),
    )
    return {r["serial_number"] for r in await cur.fetchall()}
