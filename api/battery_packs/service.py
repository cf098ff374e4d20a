"""Battery-pack use cases, scoped like batteries: a dealer reaches only its own packs."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.auth.tokens import Principal
from api.batteries import queries as battery_queries
from api.batteries.service import read_scope, require_registrar, require_writer, visible_battery
from api.battery_packs import queries
from api.battery_packs.models import (
    AllocateRequest,
    BatteryPackUpdate,
    RowError,
    allocation_body,
    columns_of,
    validate_pack,
)
from api.battery_packs.page_cache import PackPageCache
from api.errors import BadRequest, Conflict, Forbidden, NotFound


async def list_packs(
    pool: AsyncConnectionPool,
    pages: PackPageCache | None,
    *,
    principal: Principal,
    limit: int,
    offset: int,
    search: str | None,
    sort: str,
    order: str,
    filters: dict[str, str | None],
    dealer_id: int | None,
) -> tuple[str, int]:
    """A page of the packs the caller may see (JSON text) and how many match; from `pages` when
    nothing has changed since the same page was built."""
    dealer, owner = read_scope(principal, dealer_id=dealer_id)
    descending = order.lower() == "desc"

    async def build() -> tuple[str, int]:
        async with pool.connection() as conn:
            return await queries.list_packs(
                conn,
                dealer_id=dealer,
                owner_id=owner,
                filters=filters,
                search=search,
                sort=sort,
                descending=descending,
                limit=limit,
                offset=offset,
            )

    if pages is None:
        return await build()
    # The key holds the caller's scope: a dealer's page is never another's.
    key = (dealer, owner, search, sort, descending, limit, offset, *sorted(filters.items()))
    return await pages.page(key, build)


async def pack_detail(conn: AsyncConnection, *, principal: Principal, tag: str) -> dict[str, Any]:
    """The pack with its whole allocation history."""
    battery = await visible_battery(conn, principal=principal, serial=tag)
    return await _detail(conn, battery["id"])


async def _detail(conn: AsyncConnection, battery_id: int) -> dict[str, Any]:
    body = await queries.pack_json(conn, battery_id)
    assert body is not None
    body["allocations"] = [allocation_body(a) for a in await queries.allocations(conn, battery_id)]
    return body


async def create_pack(conn: AsyncConnection, *, principal: Principal, raw: Any) -> dict[str, Any]:
    require_registrar(principal)
    try:
        values = columns_of(validate_pack(raw))
    except RowError as exc:
        raise BadRequest(
            [{"field": exc.field, "message": exc.message}], error=f"Invalid fields: {exc.field}"
        ) from None
    values = {k: v for k, v in values.items() if v is not None}
    async with conn.transaction():
        if values.get("dealer_id") is not None and not await queries.dealer_exists(conn, values["dealer_id"]):
            raise NotFound(f"No dealer with id {values['dealer_id']}", error="Dealer not found")
        battery_id = await queries.insert_pack(conn, values)
        if battery_id is None:
            raise Conflict(
                f"A battery pack with asset tag {values['serial_number']} already exists",
                error="Battery pack already exists",
                code="ASSET_EXISTS",
            )
        await battery_queries.record_activity(
            conn, battery_id=battery_id, actor=principal.actor, action="created", detail={"source": "api"}
        )
        return await _detail(conn, battery_id)


async def update_pack(
    conn: AsyncConnection, *, principal: Principal, tag: str, body: BatteryPackUpdate
) -> dict[str, Any]:
    """Change the fields given; an explicit null clears a field. The asset tag cannot change."""
    require_writer(principal)
    values = columns_of(body)
    if values.pop("serial_number", tag) != tag:
        # 409, not 400: the tag is well formed; it conflicts with the pack's own (the path's)
        raise Conflict("asset_tag identifies the pack and cannot be changed", error="asset_tag is the pack's")
    if "dealer_id" in values:
        if principal.role != "admin":
            raise Forbidden("Only an admin moves a pack to another dealer")
        if values["dealer_id"] is None:
            raise BadRequest("dealer_id cannot be cleared", error="Invalid fields: dealer_id")
    if values.get("health_score", 0) is None:
        raise BadRequest("health_score cannot be cleared", error="Invalid fields: health_score")
    async with conn.transaction():
        battery = await visible_battery(conn, principal=principal, serial=tag)
        await queries.lock_pack(conn, battery["id"])  # the recorded "from" values are the real ones
        before = await queries.get_pack(conn, battery["id"])
        assert before is not None
        if "dealer_id" in values and not await queries.dealer_exists(conn, values["dealer_id"]):
            raise NotFound(f"No dealer with id {values['dealer_id']}", error="Dealer not found")
        changed = {c: v for c, v in values.items() if before.get(c) != v}
        if changed:
            await queries.update_pack(conn, battery["id"], changed)
            await battery_queries.record_activity(
                conn,
                battery_id=battery["id"],
                actor=principal.actor,
                action="updated",
                detail={
                    "source": "api",
                    "changes": {c: [_plain(before.get(c)), _plain(v)] for c, v in changed.items()},
                },
            )
        return await _detail(conn, battery["id"])


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | bool) else str(value)


async def delete_pack(conn: AsyncConnection, *, principal: Principal, tag: str) -> dict[str, Any]:
    require_writer(principal)
    async with conn.transaction():
        battery = await visible_battery(conn, principal=principal, serial=tag)
        deleted_at = await queries.soft_delete(conn, [battery["id"]], actor=principal.actor)
    return {
        "status": "success",
        "message": "Asset deleted successfully",
        "deletedAt": _iso(deleted_at),
        "asset_tag": tag,
    }


async def delete_packs(conn: AsyncConnection, *, principal: Principal, tags: list[str]) -> dict[str, Any]:
    """Soft-delete a group: all of them, or none when any is unknown (404 naming them)."""
    require_writer(principal)
    unique = list(dict.fromkeys(tags))
    async with conn.transaction():
        rows = await queries.live_by_tags(conn, unique)
        if principal.role == "dealer":
            rows = [r for r in rows if r["dealer_id"] == principal.dealer_id]
        found = {r["serial_number"] for r in rows}
        missing = [t for t in unique if t not in found]
        if missing:
            raise NotFound({"missing_asset_tags": missing}, error="Battery pack not found")
        deleted_at = await queries.soft_delete(conn, [r["id"] for r in rows], actor=principal.actor)
    return {
        "status": "success",
        "message": "Assets deleted successfully",
        "deletedAt": _iso(deleted_at),
        "asset_tags": unique,
        "count": len(unique),
    }


async def allocate_pack(
    conn: AsyncConnection, *, principal: Principal, tag: str, body: AllocateRequest
) -> dict[str, Any]:
    """Allocate to a vehicle, user or location; the previous allocation is closed, not erased."""
    require_writer(principal)
    async with conn.transaction():
        battery = await visible_battery(conn, principal=principal, serial=tag)
        await queries.lock_pack(conn, battery["id"])  # two allocations at once would both stay open
        await queries.release_allocation(conn, battery["id"])
        await queries.insert_allocation(
            conn,
            battery_id=battery["id"],
            target_category=body.target_category,
            target_individual=body.target_individual,
            status_label=body.status_label,
            actor=principal.actor,
        )
        changes: dict[str, Any] = {}
        if body.status_label is not None:
            changes["status_label"] = body.status_label
        if body.target_category == "Location":
            changes["location"] = body.target_individual
        if changes:
            await queries.update_pack(conn, battery["id"], changes)
        await battery_queries.record_activity(
            conn,
            battery_id=battery["id"],
            actor=principal.actor,
            action="allocated",
            detail=body.model_dump(),
        )
        return await _detail(conn, battery["id"])


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
