"""Bulk create and update of battery packs from CSV or a JSON array.

Every row is validated first and reported by number (the first data row is row 1). The rows then go
through COPY into a temporary table and one INSERT/UPDATE ... SELECT, in one transaction: by default
all or nothing, or with `all_or_nothing=false` the good rows only. `dry_run` validates and rolls back.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from api.auth.tokens import Principal
from api.batteries.service import require_registrar
from api.battery_packs import queries
from api.battery_packs.models import (
    COLUMNS,
    FIELDS,
    PACK_TEXT,
    RowError,
    blank_to_none,
    columns_of,
    validate_pack,
)
from api.errors import BadRequest, Conflict, NotFound

log = logging.getLogger(__name__)

MAX_REPORTED = 1000  # row errors listed in one answer; the total is always given
PROGRESS_EVERY = 10_000


@dataclass
class BulkReport:
    rows: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row_no: int, tag: Any, field_name: str, message: str) -> None:
        self.errors.append({"row": row_no, "asset_tag": tag, "field": field_name, "error": message})

    def body(self) -> dict[str, Any]:
        ordered = sorted(self.errors, key=lambda e: e["row"])
        return {
            "rows": self.rows,
            "failed": len({e["row"] for e in ordered}),
            "errors": ordered[:MAX_REPORTED],
            "errors_total": len(ordered),
        }


def parse_csv(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """CSV rows as (row number, pack): header names are the spec's field names, the technical ones
    nested under `battery_pack` as in JSON; an empty cell is no value (left out)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("The CSV file must be UTF-8 encoded", error="Invalid CSV") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise BadRequest("The CSV file is empty", error="Invalid CSV") from None
    unknown = [h for h in header if h not in FIELDS]
    if unknown or "asset_tag" not in header or len(set(header)) != len(header):
        raise BadRequest(
            {"unknown_columns": unknown, "allowed_columns": list(FIELDS)},
            error="Invalid CSV header: asset_tag is required; columns must be known and unique",
        )
    top = [(i, name) for i, name in enumerate(header) if name not in PACK_TEXT]
    specs = [(i, name) for i, name in enumerate(header) if name in PACK_TEXT]
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        for number, cells in enumerate(reader, start=1):
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue  # a blank line is not a row
            if len(cells) != len(header):
                rows.append((number, {"__cells__": len(cells)}))
                continue
            row: dict[str, Any] = {name: cells[i] for i, name in top if cells[i]}
            pack = {name: cells[i] for i, name in specs if cells[i]}
            if pack:
                row["battery_pack"] = pack
            rows.append((number, row))
    except csv.Error:
        raise BadRequest(
            f"line {reader.line_num} is not valid CSV (an unbalanced quote, or a field over 128 KiB)",
            error="Invalid CSV",
        ) from None
    return rows


def parse_json_rows(items: list[Any]) -> list[tuple[int, Any]]:
    return list(enumerate(items, start=1))


def _validate(
    rows: list[tuple[int, Any]], *, report: BulkReport, for_update: bool, flat: bool
) -> list[tuple[Any, ...]]:
    """Clean every row (`flat`: CSV columns); return the staged tuples of the good ones, recording
    the bad ones."""
    staged: list[tuple[Any, ...]] = []
    seen: dict[str, int] = {}
    for row_no, raw in rows:
        tag = raw.get("asset_tag") if isinstance(raw, dict) else None
        if not isinstance(tag, str):
            tag = None
        try:
            if isinstance(raw, dict) and "__cells__" in raw:
                raise RowError("row", f"has {raw['__cells__']} cells, the header has a different number")
            if not flat and isinstance(raw, dict):
                raw = blank_to_none(raw)  # a CSV row has no empty cells left (parse_csv)
            values = columns_of(validate_pack(raw, csv=flat))
            dealer = values.get("dealer_id")
            if for_update and dealer is not None:
                raise RowError("dealer_id", "cannot be changed by an update")
            tag = values["serial_number"]
            if tag in seen:
                raise RowError("asset_tag", f"duplicate of row {seen[tag]}")
            seen[tag] = row_no
        except RowError as exc:
            report.add(row_no, tag, exc.field, exc.message)
            continue
        staged.append((row_no, *map(values.get, COLUMNS)))
    return staged


def _progress(rows: list[tuple[Any, ...]], *, started: float) -> Iterator[tuple[Any, ...]]:
    total = len(rows)
    for done, row in enumerate(rows, start=1):
        yield row
        if done % PROGRESS_EVERY == 0 or done == total:
            log.info(
                "battery pack import progress: %d/%d rows staged",
                done,
                total,
                extra={
                    "rows_done": done,
                    "rows_total": total,
                    "seconds": round(time.monotonic() - started, 2),
                },
            )


class _Rollback(Exception):
    """Leave the transaction without writing (dry run, or errors under all-or-nothing)."""


async def bulk_create(
    conn: AsyncConnection,
    *,
    principal: Principal,
    rows: list[tuple[int, Any]],
    dry_run: bool,
    all_or_nothing: bool,
    source: str,
) -> dict[str, Any]:
    require_registrar(principal)
    started = time.monotonic()
    report = BulkReport(rows=len(rows))
    staged = _validate(rows, report=report, for_update=False, flat=source == "csv")
    created = 0
    try:
        async with conn.transaction():
            await queries.create_stage(conn)
            await queries.copy_stage(conn, _progress(staged, started=started))
            await queries.lock_bulk(conn)  # staged first: the lock is held only while checking and writing
            for r in await queries.stage_unknown_dealers(conn):
                report.add(
                    r["row_no"], r["serial_number"], "dealer_id", f"dealer {r['dealer_id']} does not exist"
                )
            conflicts = await queries.stage_conflicts(conn)
            for r in conflicts:
                deleted = " (a deleted pack keeps its tag)" if r["deleted"] else ""
                report.add(r["row_no"], r["serial_number"], "asset_tag", f"already exists{deleted}")
            if report.errors and all_or_nothing:
                raise _Rollback
            if report.errors:
                bad = sorted({e["row"] for e in report.errors})
                await conn.execute("DELETE FROM pack_stage WHERE row_no = ANY(%s)", (bad,))
            if dry_run:
                raise _Rollback
            created = await queries.insert_from_stage(conn, actor=principal.actor, source=source)
            staged_rows = _rows(staged)
            expected = len(staged) - len({e["row"] for e in report.errors} & staged_rows)
            if created != expected:
                # A tag was taken between the check and the insert: start again rather than guess.
                raise Conflict("Asset tags changed during the import; retry", error="Concurrent import")
    except _Rollback:
        pass
    if report.errors and all_or_nothing:
        _refuse(report, dry_run=dry_run)
    seconds = round(time.monotonic() - started, 3)
    log.info(
        "battery pack import done",
        extra={
            "rows": len(rows),
            "rows_created": created,
            "failed": len(report.errors),
            "dry_run": dry_run,
            "seconds": seconds,
        },
    )
    body = report.body()
    valid = len(rows) - body["failed"]
    return {"dry_run": dry_run, "created": created, "valid": valid, **body, "seconds": seconds}


async def bulk_update(
    conn: AsyncConnection,
    *,
    principal: Principal,
    rows: list[tuple[int, Any]],
    dry_run: bool,
    all_or_nothing: bool,
    source: str,
) -> dict[str, Any]:
    started = time.monotonic()
    report = BulkReport(rows=len(rows))
    staged = _validate(rows, report=report, for_update=True, flat=source == "csv")
    updated = 0
    try:
        async with conn.transaction():
            await queries.lock_bulk(conn)
            tags = [r[1] for r in staged]
            dealer = principal.dealer_id if principal.role == "dealer" else None
            visible = await queries.live_tags(conn, tags, dealer_id=dealer)
            missing = [r for r in staged if r[1] not in visible]
            for r in missing:
                report.add(r[0], r[1], "asset_tag", "not found")
            if report.errors and all_or_nothing:
                raise _Rollback
            staged = [r for r in staged if r[1] in visible]
            await queries.create_stage(conn)
            await queries.copy_stage(conn, _progress(staged, started=started))
            if dry_run:
                raise _Rollback
            updated = await queries.update_from_stage(conn, actor=principal.actor, source=source)
    except _Rollback:
        pass
    if report.errors and all_or_nothing:
        _refuse(report, dry_run=dry_run)
    body = report.body()
    return {
        "dry_run": dry_run,
        "updated": updated,
        "valid": len(rows) - body["failed"],
        **body,
        "seconds": round(time.monotonic() - started, 3),
    }


def _rows(staged: list[tuple[Any, ...]]) -> set[int]:
    return {r[0] for r in staged}


def _refuse(report: BulkReport, *, dry_run: bool) -> None:
    """Answer 409 when every problem is a taken tag, 404 when every one is an unknown tag, 400
    otherwise; nothing was written."""
    body = report.body()
    errors = [e["error"] for e in report.errors]
    if all(e.startswith("already exists") for e in errors):
        kind, code = Conflict, "ASSET_EXISTS"
    elif all(e == "not found" for e in errors):
        kind, code = NotFound, "NOT_FOUND"
    else:
        kind, code = BadRequest, "VALIDATION_ERROR"
    raise kind(
        body["errors"],
        error=f"{body['failed']} of {body['rows']} rows cannot be used; nothing was written",
        code=code,
        extra={
            "rows": body["rows"],
            "failed": body["failed"],
            "errors_total": body["errors_total"],
            "dry_run": dry_run,
        },
    )
