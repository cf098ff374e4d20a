"""Battery use cases, scoped to the caller: a dealer reaches only its own, a consumer only theirs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

from api.analytics.queries import Scope
from api.analytics.service import predictive_maintenance
from api.auth.tokens import Principal
from api.batteries import queries
from api.batteries.details import BatteryDetails
from api.batteries.models import BatteryCreate
from api.errors import Conflict, Forbidden, NotFound
from packfleet.settings import Settings


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
    if principal.role not in ("admin", "dealer", "consumer"):
        raise Forbidden("Insufficient permissions for this operation")
    battery = await queries.get_battery(conn, serial)
    if battery is None or not _can_see(principal, battery):
        raise NotFound(f"No battery found with serial number {serial}", error="Battery not found")
    return battery


def require_registrar(principal: Principal) -> None:
    """Only admins register batteries and packs: serials are one namespace across dealers, so a
    dealer that could create them could learn (by a 409) which exist in another dealer's fleet, and
    take serials that are not its own. Dealers receive the batteries allocated to them."""
    if principal.role != "admin":
        raise Forbidden("Batteries are registered by an admin and allocated to dealers")


async def create_battery(
    conn: AsyncConnection, *, principal: Principal, body: BatteryCreate
) -> dict[str, Any]:
    require_registrar(principal)
    dealer_id = body.dealer_id
    async with conn.transaction():
        if dealer_id is not None:
            cur = await conn.execute("SELECT 1 FROM dealers WHERE id = %s", (dealer_id,))
            if await cur.fetchone() is None:
                raise NotFound(f"No dealer with id {dealer_id}", error="Dealer not found")
        row = await queries.insert_battery(
            conn, serial_number=body.serial_number, health_score=body.health_score, dealer_id=dealer_id
        )
        if row is not None:
            await queries.record_activity(
                conn, battery_id=row["id"], actor=principal.actor, action="created", detail={"source": "api"}
            )
    if row is None:
        raise Conflict(f"Battery {body.serial_number} already exists", error="Battery already exists")
    return row


async def list_batteries(
    conn: AsyncConnection,
    *,
    principal: Principal,
    status: str | None,
    desired_status: str | None = None,
    dealer_id: int | None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    owner_id = None
    if principal.role == "dealer":
        dealer_id = principal.dealer_id
    elif principal.role == "consumer":
        owner_id = principal.consumer_id
    elif principal.role != "admin":
        raise Forbidden("Insufficient permissions for this operation")
    return await queries.list_batteries(
        conn,
        status=status,
        desired_status=desired_status,
        dealer_id=dealer_id,
        owner_id=owner_id,
        limit=limit,
        offset=offset,
    )


async def battery_detail(details: BatteryDetails, *, principal: Principal, serial: str) -> dict[str, Any]:
    """The battery with its latest reading and pending command (the hot path: looked up together
    with those of concurrent requests, api/batteries/details.py)."""
    if principal.role not in ("admin", "dealer", "consumer"):
        raise Forbidden("Insufficient permissions for this operation")
    row = await details.get(serial)
    if row is None or not _can_see(principal, row):
        raise NotFound(f"No battery found with serial number {serial}", error="Battery not found")
    battery = {k: v for k, v in row.items() if not k.startswith(("r_", "p_"))}
    reading = {k[2:]: v for k, v in row.items() if k.startswith("r_")} if row["r_present"] else None
    pending = {k[2:]: v for k, v in row.items() if k.startswith("p_")} if row["p_id"] is not None else None
    return {"battery": battery, "reading": reading, "pending": pending}


def read_scope(principal: Principal, *, dealer_id: int | None = None) -> tuple[int | None, int | None]:
    """(dealer_id, owner_id) filters that confine a read to what the caller may see (403 otherwise)."""
    if principal.role == "admin":
        return dealer_id, None
    if principal.role == "dealer":
        return principal.dealer_id, None
    if principal.role == "consumer":
        return None, principal.consumer_id
    raise Forbidden("Insufficient permissions for this operation")


def require_writer(principal: Principal) -> None:
    """Only admins and dealers change batteries."""
    if principal.role not in ("admin", "dealer"):
        raise Forbidden("Insufficient permissions for this operation")


async def assign_battery(
    conn: AsyncConnection, *, principal: Principal, serial: str, consumer_id: int | None
) -> dict[str, Any]:
    """Give the battery to a consumer of its dealer (or take it back with `consumer_id: null`)."""
    require_writer(principal)
    async with conn.transaction():
        battery = await visible_battery(conn, principal=principal, serial=serial)
        dealer_id = battery["dealer_id"]
        if consumer_id is not None:
            consumer = await queries.get_consumer(conn, consumer_id)
            if consumer is None or (
                principal.role == "dealer" and consumer["dealer_id"] != principal.dealer_id
            ):
                raise NotFound(f"No consumer found with id {consumer_id}", error="Consumer not found")
            if dealer_id is None:
                dealer_id = consumer["dealer_id"]  # an unowned battery joins the consumer's dealer
            elif consumer["dealer_id"] != dealer_id:
                raise Conflict(
                    f"Consumer {consumer_id} belongs to another dealer than battery {serial}",
                    error="Dealer mismatch",
                )
        row = await queries.set_owner(conn, battery["id"], owner_id=consumer_id, dealer_id=dealer_id)
        await queries.record_activity(
            conn,
            battery_id=battery["id"],
            actor=principal.actor,
            action="assigned",
            detail={"from_consumer_id": battery["owner_id"], "to_consumer_id": consumer_id},
        )
    return row


async def health_report(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, dealer_id: int | None
) -> dict[str, Any]:
    """Fleet health per status, computed from the batteries the caller may see."""
    dealer, owner = read_scope(principal, dealer_id=dealer_id)
    groups = await queries.health_by_status(conn, dealer_id=dealer, owner_id=owner)
    predictive = await predictive_maintenance(conn, Scope(dealer_id=dealer, owner_id=owner), settings)
    total = sum(g["count"] for g in groups)
    health_sum = sum((g["health_sum"] for g in groups), Decimal(0))
    reporting = sum(g["reporting"] for g in groups)
    soc_weighted = sum(g["avg_soc"] * g["reporting"] for g in groups if g["avg_soc"] is not None)
    return {
        "fleet_health": {
            g["status"]: {
                "count": g["count"],
                "avg_health": str(g["avg_health"]),
                "min_health": _number(g["min_health"]),
                "max_health": _number(g["max_health"]),
            }
            for g in groups
        },
        "total_batteries": total,
        "overall_health_score": float(round(health_sum / total, 1)) if total else None,
        # Beyond the spec: what the latest readings say about the same batteries.
        "telemetry": {
            "reporting": reporting,
            "online": sum(g["online"] for g in groups),
            "low_soc": sum(g["low_soc"] for g in groups),
            "stale_over_1h": sum(g["stale"] for g in groups),
            "avg_soc": round(soc_weighted / reporting, 1) if reporting else None,
        },
        # Beyond the spec: batteries asked to change status whose device has not confirmed it yet.
        "awaiting_confirmation": sum(g["awaiting_confirmation"] for g in groups),
        # The health job's findings (api/analytics), as GET /api/analytics/battery-health reports them.
        "predictive_maintenance": {
            **predictive,
            "estimated_service_cost": _number(predictive["estimated_service_cost"]),
        },
    }


async def battery_activity(
    conn: AsyncConnection, *, principal: Principal, serial: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    battery = await visible_battery(conn, principal=principal, serial=serial)
    return await queries.list_activity(conn, battery["id"], limit=limit, offset=offset)


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)
