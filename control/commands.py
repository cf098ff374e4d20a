"""Issuing and cancelling commands: the one place a battery's desired state changes.

The API and later jobs (finance auto-disable) call these; the control process publishes what they
queue. Each call runs in its own transaction (a savepoint inside the caller's, if it has one) and
wakes the control processes through NOTIFY when it commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from psycopg import AsyncConnection

from control import queries
from control.errors import BatteryNotFound, CommandNotFound, NotCancellable
from control.queries import Event, Row
from schemas import state

DEFAULT_TTL = timedelta(hours=24)

Action = Literal["enable", "disable"]
Spec = Literal["charging", "discharging", "both"]
BatteryStatus = Literal["active", "inactive", "maintenance"]


@dataclass(frozen=True)
class Issued:
    """Commands created by one call, and the older ones they superseded."""

    commands: list[Row]
    superseded: list[Row]


def actor_of(requested_by: int | None, source: str) -> str:
    """Who asked, as written in the audit trail."""
    return f"user:{requested_by}" if requested_by is not None else source


async def issue_command(
    conn: AsyncConnection[Row],
    *,
    battery_id: int,
    action: Action,
    spec: Spec,
    reason: str,
    requested_by: int | None,
    source: str,
    expires_in: timedelta | None = None,
    battery_status: BatteryStatus | None = None,
    status_label: str | None = None,
) -> Row:
    """Queue a command for one battery and set its desired state; return the command row."""
    issued = await issue_commands(
        conn,
        battery_ids=[battery_id],
        action=action,
        spec=spec,
        reason=reason,
        requested_by=requested_by,
        source=source,
        expires_in=expires_in,
        battery_status=battery_status,
        status_label=status_label,
    )
    if not issued.commands:
        raise BatteryNotFound(f"no battery with id {battery_id}")
    return issued.commands[0]


async def issue_commands(
    conn: AsyncConnection[Row],
    *,
    battery_ids: Sequence[int],
    action: Action,
    spec: Spec,
    reason: str,
    requested_by: int | None,
    source: str,
    expires_in: timedelta | None = None,
    battery_status: BatteryStatus | None = None,
    status_label: str | None = None,
    rate_per_s: float | None = None,
    bulk_id: UUID | None = None,
) -> Issued:
    """Queue one command per battery (the same intent for each), in one transaction.

    The last intent wins: a queued or sent command of the same battery is cancelled, naming the new
    one. A delivered one is already being applied by the device, so the new one waits behind it.
    With `rate_per_s`, the commands become due one after another at that rate (a bulk rollout);
    each expires `expires_in` after it becomes due. Batteries that do not exist are skipped.
    """
    if action not in ("enable", "disable"):
        raise ValueError(f"unknown action {action!r}")
    if not reason.strip():
        raise ValueError("a command needs a reason")
    ttl = expires_in if expires_in is not None else DEFAULT_TTL
    if ttl <= timedelta(0):
        raise ValueError("expires_in must be positive")
    actor = actor_of(requested_by, source)
    async with conn.transaction():
        locked = await queries.lock_batteries(conn, sorted(set(battery_ids)))
        # Keep the caller's order (a rollout goes in the order asked), once per battery.
        batteries = [locked[i] for i in dict.fromkeys(battery_ids) if i in locked]
        if not batteries:
            return Issued(commands=[], superseded=[])
        ids = [uuid.uuid4() for _ in batteries]
        now = await _db_now(conn)
        step = 1 / rate_per_s if rate_per_s else 0.0
        not_before = [now + timedelta(seconds=i * step) for i in range(len(batteries))]
        created = await queries.insert_commands(
            conn,
            ids=ids,
            batteries=batteries,
            action=action,
            spec=spec,
            reason=reason,
            requested_by=requested_by,
            source=source,
            battery_status=battery_status,
            status_label=status_label,
            not_before=not_before,
            expires_at=[t + ttl for t in not_before],
            bulk_id=bulk_id,
        )
        superseded = await queries.cancel_superseded(
            conn, battery_ids=[b["id"] for b in batteries], new_ids=ids, actor=actor
        )
        events: list[Event] = [
            (row["id"], "cancelled", None, actor, row["cancel_reason"]) for row in superseded
        ]
        events += [(row["id"], "queued", None, actor, reason) for row in created]
        await queries.insert_events(conn, events)
        await queries.set_desired(
            conn,
            desired=[
                _desired(b, enable=action == "enable", spec=spec, label=battery_status) for b in batteries
            ],
            status_label=status_label,
        )
        await queries.notify(conn)
    by_id = {b["id"]: b for b in batteries}
    commands = [
        {
            **row,
            "serial_number": by_id[row["battery_id"]]["serial_number"],
            "action": action,
            "spec": spec,
            "status": "queued",
            "reason": reason,
        }
        for row in created
    ]
    return Issued(commands=commands, superseded=superseded)


async def cancel_command(
    conn: AsyncConnection[Row], *, command_id: UUID, reason: str, requested_by: int | None, source: str
) -> Row:
    """Cancel a queued or sent command; if it was the battery's latest, restore the desired state it replaced.

    A sent command may already have reached the device; its late `applied` ack then shows up in the
    battery's reported state, never as a revived command.
    """
    actor = actor_of(requested_by, source)
    async with conn.transaction():
        found = await queries.get_command(conn, command_id)
        if found is None:
            raise CommandNotFound(f"no command {command_id}")
        await queries.lock_batteries(conn, [found["battery_id"]])  # batteries before commands
        command = await queries.get_command(conn, command_id, lock=True)
        assert command is not None  # commands are never deleted
        if command["status"] not in ("queued", "sent"):
            raise NotCancellable(command["status"])
        await queries.cancel_command(conn, command_id=command_id, reason=reason, actor=actor)
        await queries.insert_events(conn, [(command_id, "cancelled", None, actor, reason)])
        if not await queries.has_newer_command(conn, battery_id=command["battery_id"], seq=command["seq"]):
            await queries.restore_desired(conn, command=command)
        await queries.notify(conn)  # the battery's next command, if any, is now its head
        row = await queries.get_command(conn, command_id)
    assert row is not None
    return row


def _desired(battery: Row, *, enable: bool, spec: str, label: str | None) -> Row:
    """The battery's desired state once this command is applied: its switches (a command leaves the
    switch it does not name as it was) and the status they make."""
    before = state.switches(battery["desired_enabled"], battery["desired_spec"])
    switches = state.after_command(before, enable=enable, spec=spec)
    enabled, canonical_spec = state.canonical(switches)
    status = state.status_of(switches, wanted=label, current=battery["desired_status"])
    return {"id": battery["id"], "enabled": enabled, "spec": canonical_spec, "status": status}


async def _db_now(conn: AsyncConnection[Row]) -> datetime:
    cur = await conn.execute("SELECT clock_timestamp() AS now")
    row: dict[str, Any] | None = await cur.fetchone()
    assert row is not None
    now: datetime = row["now"]
    return now
