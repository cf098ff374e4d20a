"""Technician management (admin): a technician is a user with role `technician` and a service profile."""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection

from api.auth.tokens import Principal
from api.errors import Conflict, Forbidden, NotFound
from api.service import queries
from api.service.models import TechnicianCreate, TechnicianUpdate

log = logging.getLogger(__name__)


def _admin_only(principal: Principal) -> None:
    if principal.role != "admin":
        raise Forbidden("Only an admin manages technicians")


async def create_technician(
    conn: AsyncConnection, *, principal: Principal, body: TechnicianCreate
) -> dict[str, Any]:
    """A new technician user with its profile, or a profile for an existing technician user."""
    _admin_only(principal)
    profile = body.model_dump(exclude={"phone", "name"})
    async with conn.transaction():
        user = await queries.user_by_phone(conn, body.phone)
        if user is None:
            created = await queries.insert_technician_user(conn, phone=body.phone, name=body.name)
            if created is None:  # taken between our read and the insert
                raise Conflict(f"A user with phone {body.phone} already exists", error="User already exists")
            user_id = created["id"]
        elif user["role"] != "technician":
            raise Conflict(
                f"The user with phone {body.phone} is a {user['role']}, not a technician",
                error="User already exists",
            )
        else:
            user_id = user["id"]
            await queries.update_profile(conn, user_id, {"name": body.name})
        if not await queries.insert_profile(conn, user_id, profile):
            raise Conflict(f"Technician {user_id} already has a profile", error="Technician already exists")
        row = await queries.get_technician(conn, user_id)
    log.info("technician added", extra={"technician_id": user_id})
    return row  # type: ignore[return-value]


async def get_technician(
    conn: AsyncConnection, *, principal: Principal, technician_id: int
) -> dict[str, Any]:
    """Admins and dealers see any technician; a technician sees themself."""
    if principal.role not in ("admin", "dealer", "technician"):
        raise Forbidden("Insufficient permissions for this operation")
    row = await queries.get_technician(conn, technician_id)
    if row is None or (principal.role == "technician" and technician_id != principal.user_id):
        raise NotFound(f"No technician with id {technician_id}", error="Technician not found")
    return row


async def list_technicians(
    conn: AsyncConnection,
    *,
    principal: Principal,
    status: str | None,
    skill: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    if principal.role not in ("admin", "dealer"):
        raise Forbidden("Insufficient permissions for this operation")
    return await queries.list_technicians(conn, status=status, skill=skill, limit=limit, offset=offset)


async def update_technician(
    conn: AsyncConnection, *, principal: Principal, technician_id: int, body: TechnicianUpdate
) -> dict[str, Any]:
    _admin_only(principal)
    async with conn.transaction():
        if await queries.lock_technicians(conn, [technician_id]) == {}:
            raise NotFound(f"No technician with id {technician_id}", error="Technician not found")
        await queries.update_profile(conn, technician_id, body.model_dump(exclude_unset=True))
        row = await queries.get_technician(conn, technician_id)
    return row  # type: ignore[return-value]
