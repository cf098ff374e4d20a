"""Battery use cases, scoped to the caller: a dealer reaches only its own, a consumer only theirs."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from api.auth.tokens import Principal
from api.batteries import queries
from api.batteries.models import BatteryCreate
from api.errors import BadRequest, Conflict, Forbidden, NotFound


def _can_see(principal: Principal, battery: dict[str, Any]) -> bool:
    if principal.role == "admin":
        return True
    if principal.role == "dealer":
        return battery["dealer_id"] == principal.dealer_id
    if principal.role == "consumer":
        return battery["owner_id"] is not None and battery["owner_id"] == principal.consumer_id
    return False


async def visible_battery(conn: AsyncConnection, *, principal: Principal, serial: str) -> dict[str, Any]:
    """The battery if the caller may see it; 404 otherwise (we do not say it exists)."""
    battery = await queries.get_battery(conn, serial)
    if battery is None or not _can_see(principal, battery):
        raise NotFound(f"No battery found with serial number {serial}", error="Battery not found")
    return battery


async def create_battery(conn: AsyncConnection, *, principal: Principal, body: BatteryCreate) -> dict[str, Any]:
    if principal.role not in ("admin", "dealer"):
        raise Forbidden("Insufficient permissions for this operation")
    dealer_id = principal.dealer_id if principal.role == "dealer" else body.dealer_id
    if principal.role == "dealer" and body.dealer_id not in (None, principal.dealer_id):
        raise Forbidden("A dealer creates batteries only for itself")
    async with conn.transaction():
        if dealer_id is not None:
            cur = await conn.execute("SELECT 1 FROM dealers WHERE id = %s", (dealer_id,))
            if await cur.fetchone() is None:
                raise BadRequest(f"dealer {dealer_id} does not exist")
        row = await queries.insert_battery(
            conn, serial_number=body.serial_number, health_score=body.health_score, dealer_id=dealer_id
        )
    if row is None:
        raise Conflict(f"Battery {body.serial_number} already exists", error="Battery already exists")
    return row


async def list_batteries(
    conn: AsyncConnection, *, principal: Principal, status: str | None, dealer_id: int | None
) -> list[dict[str, Any]]:
    owner_id = None
    if principal.role == "dealer":
        dealer_id = principal.dealer_id
    elif principal.role == "consumer":
        owner_id = principal.consumer_id
    elif principal.role != "admin":
        raise Forbidden("Insufficient permissions for this operation")
    return await queries.list_batteries(conn, status=status, dealer_id=dealer_id, owner_id=owner_id)


async def battery_detail(conn: AsyncConnection, *, principal: Principal, serial: str) -> dict[str, Any]:
    battery = await visible_battery(conn, principal=principal, serial=serial)
    reading = await queries.get_latest_reading(conn, battery["id"])
    pending = await queries.get_pending_command(conn, battery["id"])
    return {"battery": battery, "reading": reading, "pending": pending}
