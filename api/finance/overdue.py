"""The overdue auto-disable: warnings, disables, their follow-up, and the enable after a payment.

The auto-disable never strands a rider: by default it only stops charging (`spec: "charging"`).
With `finance_disable_mode = "full"`, discharge is also cut, but only on a battery whose latest
reading is fresh and at rest; a moving one has its charging cut now and its discharge at a later
run. A consumer is warned by SMS `finance_warning_days` before: the disable waits for the warning's
`disable_from` date (the day the EMI is overdue beyond the threshold, or `finance_warning_days` after
a late warning), at least `finance_disable_grace_hours` after it, and never comes in the run that
sent the warning. Only a battery the operators left enabled is
disabled, and a payment enables it again only while the overdue disable is still its latest command:
an operator's command since then (or an operator's disable beforehand) is never undone.
Every key is in the database, so a second run, or two at once, issue nothing twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from api.auth.tokens import Principal
from api.commands import queries as command_queries
from api.finance import overdue_queries as q
from api.finance import queries
from api.finance.access import Scope, scope_for
from api.finance.loans import business_today
from api.messaging import templates
from api.messaging.service import Outgoing, queue_sms_many
from control.commands import issue_commands
from packfleet.settings import Settings

log = logging.getLogger(__name__)

Row = dict[str, Any]
REASON = "emi_overdue"
ENABLE_REASON = "emi_overdue_cleared"
SOURCE = "finance"


# --- the auto-disable ---------------------------------------------------------------------------


def at_rest(row: Row, *, now: datetime, settings: Settings) -> bool:
    """A fresh reading with |current| below the rest threshold: discharge may be cut safely."""
    ts, current = row["reading_ts"], row["reading_current"]
    return (
        ts is not None
        and current is not None
        and now - ts <= timedelta(seconds=settings.finance_fresh_reading_s)
        and abs(current) < settings.finance_rest_current_a
    )


async def auto_disable(
    conn: AsyncConnection, *, principal: Principal, settings: Settings, threshold_days: int | None
) -> Row:
    """POST /api/finance/auto-disable: an admin for every loan, a dealer for its own."""
    scope = await scope_for(conn, principal, "admin", "dealer")
    return await run(
        conn,
        settings=settings,
        scope=scope,
        threshold_days=threshold_days or settings.finance_overdue_threshold_days,
        actor=principal.actor,
        requested_by=principal.user_id,
        dealer_id=principal.dealer_id,
    )


async def run(
    conn: AsyncConnection,
    *,
    settings: Settings,
    scope: Scope,
    threshold_days: int,
    actor: str,
    requested_by: int | None = None,
    dealer_id: int | None = None,
) -> Row:
    """Warn, disable and follow up, in one transaction: safe to run twice and from two processes."""
    today = business_today(settings)
    async with conn.transaction():
        now = await _now(conn)
        warned = await _warn(conn, settings=settings, scope=scope, today=today, threshold_days=threshold_days)
        followed = await _follow_up(conn, settings=settings, scope=scope, now=now, today=today, actor=actor)
        disabled, deferred, bulk_ids = await _disable(
            conn,
            settings=settings,
            scope=scope,
            today=today,
            now=now,
            threshold_days=threshold_days,
            actor=actor,
            requested_by=requested_by,
            dealer_id=dealer_id,
        )
    serials = [d["battery_serial"] for d in disabled]
    log.info(
        "overdue auto-disable",
        extra={"disabled": len(disabled), "warned": warned, "deferred": len(deferred), **followed},
    )
    return {
        "message": "Batteries disabled successfully" if disabled else "No battery needed disabling",
        "disabled_count": len(disabled),
        "disabled_batteries": serials,
        "command_ids": [d["command_id"] for d in disabled],
        "disabled": disabled,
        "warned_count": warned,
        "deferred": deferred,
        "bulk_ids": [str(b) for b in bulk_ids],
    }


async def follow_up(conn: AsyncConnection, *, settings: Settings, actor: str) -> dict[str, int]:
    """Only the follow-up of the open disables (operators' overrides, retries, discharge at rest)."""
    async with conn.transaction():
        now = await _now(conn)
        return await _follow_up(
            conn, settings=settings, scope=Scope(), now=now, today=business_today(settings), actor=actor
        )


async def _now(conn: AsyncConnection) -> datetime:
    cur = await conn.execute("SELECT now() AS now")
    row = await cur.fetchone()
    assert row is not None
    return row["now"]


def _message(row: Row, sms: templates.Sms, key: str) -> Outgoing:
    return Outgoing(
        to=row["consumer_phone"], kind=sms.kind, text=sms.text, dedupe_key=key, consumer_id=row["consumer_id"]
    )


async def _send(conn: AsyncConnection, messages: Sequence[Outgoing]) -> None:
    """Queue SMS in this transaction (one statement); a number the gateway cannot take is logged."""
    for message, why in await queue_sms_many(conn, messages):
        log.warning("finance sms not queued", extra={"dedupe_key": message.dedupe_key, "error": why})


async def _warn(
    conn: AsyncConnection, *, settings: Settings, scope: Scope, today: date, threshold_days: int
) -> int:
    """Warn each consumer whose disable is at most `finance_warning_days` away, once per instalment."""
    # Disabled once overdue_days > threshold, i.e. from due_date + threshold + 1.
    cutoff = today + timedelta(days=settings.finance_warning_days - threshold_days - 1)
    rows = await q.to_warn(conn, scope=scope, today=today, cutoff=cutoff)
    if not rows:
        return 0
    # The first day the battery may be disabled: once overdue beyond the threshold, and never less
    # than `finance_warning_days` after this warning (a warning sent late moves the disable on).
    earliest = today + timedelta(days=settings.finance_warning_days)
    disable_from = [max(r["due_date"] + timedelta(days=threshold_days + 1), earliest) for r in rows]
    fresh = await q.insert_warnings(conn, rows, disable_from=disable_from)
    charging_only = settings.finance_disable_mode == "charging"
    entries, messages = [], []
    for row, when in zip(rows, disable_from, strict=True):
        if row["instalment_id"] not in fresh:
            continue
        sms = templates.overdue_warning(
            consumer_name=row["consumer_name"],
            battery_serial=row["battery_serial"],
            amount_due=row["overdue_amount"],
            due_date=row["due_date"],
            days_until_disable=(when - today).days,
            charging_only=charging_only,
        )
        messages.append(_message(row, sms, f"overdue_warning:instalment:{row['instalment_id']}"))
        entries.append(
            {
                "loan_id": row["loan_id"],
                "instalment_id": row["instalment_id"],
                "battery_id": row["battery_id"],
                "detail": {"disable_from": when.isoformat(), "overdue_amount": str(row["overdue_amount"])},
            }
        )
    await _send(conn, messages)
    await queries.audit_many(conn, actor="finance", action="overdue_warning_sent", entries=entries)
    return len(entries)


async def _disable(
    conn: AsyncConnection,
    *,
    settings: Settings,
    scope: Scope,
    today: date,
    now: datetime,
    threshold_days: int,
    actor: str,
    requested_by: int | None,
    dealer_id: int | None,
) -> tuple[list[Row], list[Row], list[UUID]]:
    warned_before = now - timedelta(hours=settings.finance_disable_grace_hours)
    found = await q.to_disable(
        conn, scope=scope, today=today, threshold_days=threshold_days, warned_before=warned_before
    )
    if not found:
        return [], [], []
    # Lock the loans (a payment recorded meanwhile waits, or has already cleared the overdue), then
    # look again: what another run or a payment did before the locks is seen now.
    await q.lock_loans(conn, [r["loan_id"] for r in found])
    found = await q.to_disable(
        conn,
        scope=scope,
        today=today,
        threshold_days=threshold_days,
        warned_before=warned_before,
        loan_ids=[r["loan_id"] for r in found],
    )
    deferred: list[Row] = []
    chosen: dict[str, list[Row]] = {"charging": [], "both": []}
    for row in found:
        # Switch by switch: charging already off (an operator's disable, applied or still pending,
        # of charging or of both) is left to that command; a payment then enables nothing.
        if not row["desired_charging"]:
            deferred.append(_deferred(row, "disabled_by_operator"))
        elif not row["warned"]:
            deferred.append(_deferred(row, "awaiting_warning_grace"))
        elif (
            settings.finance_disable_mode == "full"
            and row["desired_discharging"]  # an operator's cut of discharge is not ours to undo later
            and at_rest(row, now=now, settings=settings)
        ):
            chosen["both"].append(row)
        else:
            if settings.finance_disable_mode == "full":
                deferred.append(_deferred(row, "moving"))  # charging now, discharge once at rest
            chosen["charging"].append(row)
    rate = settings.finance_disable_rate_per_s or settings.command_bulk_rate_per_s
    disabled: list[Row] = []
    bulk_ids: list[UUID] = []
    for spec, rows in chosen.items():
        if not rows:
            continue
        bulk_id = uuid.uuid4()  # one roll-out per spec, followed at GET /api/commands/bulk/{id}
        await command_queries.insert_bulk(
            conn,
            bulk_id=bulk_id,
            action="disable",
            spec=spec,
            battery_status=None,
            reason=REASON,
            requested_by=requested_by,  # type: ignore[arg-type]  # NULL for the scheduled run
            dealer_id=dealer_id,
            selector={"finance": "auto-disable", "overdue_days_threshold": threshold_days},
            total=len(rows),
            rate_per_s=rate,
        )
        bulk_ids.append(bulk_id)
        disabled += await _issue_disables(
            conn,
            rows=rows,
            spec=spec,
            settings=settings,
            rate=rate,
            bulk_id=bulk_id,
            threshold_days=threshold_days,
            actor=actor,
            requested_by=requested_by,
        )
    return disabled, deferred, bulk_ids


def _deferred(row: Row, reason: str) -> Row:
    return {"battery_serial": row["battery_serial"], "loan_id": row["loan_id"], "reason": reason}


async def _issue_disables(
    conn: AsyncConnection,
    *,
    rows: Sequence[Row],
    spec: str,
    settings: Settings,
    rate: float | None,
    bulk_id: UUID | None,
    threshold_days: int,
    actor: str,
    requested_by: int | None,
) -> list[Row]:
    issued = await issue_commands(
        conn,
        battery_ids=[r["battery_id"] for r in rows],
        action="disable",
        spec=spec,  # type: ignore[arg-type]
        reason=REASON,
        requested_by=requested_by,
        source=SOURCE,
        rate_per_s=rate,
        bulk_id=bulk_id,
        expires_in=timedelta(seconds=settings.command_ttl_seconds),
    )
    command_of = {c["battery_id"]: c["id"] for c in issued.commands}
    rows = [r for r in rows if r["battery_id"] in command_of]  # a battery deleted meanwhile is skipped
    records = await q.insert_disables(
        conn, [{**r, "spec": spec, "command_id": command_of[r["battery_id"]]} for r in rows]
    )
    record_of = {r["battery_id"]: r["id"] for r in records}
    await _send(
        conn,
        [
            _message(
                row,
                templates.battery_disabled(
                    consumer_name=row["consumer_name"],
                    battery_serial=row["battery_serial"],
                    amount_due=row["overdue_amount"],
                    charging_only=spec == "charging",
                ),
                f"battery_disabled:overdue_disable:{record_of[row['battery_id']]}:{spec}",
            )
            for row in rows
        ],
    )
    await queries.audit_many(
        conn,
        actor=actor,
        action="battery_disabled",
        entries=[
            {
                "loan_id": r["loan_id"],
                "instalment_id": r["instalment_id"],
                "battery_id": r["battery_id"],
                "command_id": command_of[r["battery_id"]],
                "detail": {
                    "reason": REASON,
                    "spec": spec,
                    "overdue_days": r["overdue_days"],
                    "overdue_days_threshold": threshold_days,
                    "overdue_amount": str(r["overdue_amount"]),
                    "disable_id": record_of[r["battery_id"]],
                },
            }
            for r in rows
        ],
    )
    return [
        {
            "battery_serial": r["battery_serial"],
            "loan_id": r["loan_id"],
            "instalment_id": r["instalment_id"],
            "overdue_days": r["overdue_days"],
            "spec": spec,
            "command_id": str(command_of[r["battery_id"]]),
        }
        for r in rows
    ]


async def _follow_up(
    conn: AsyncConnection, *, settings: Settings, scope: Scope, now: datetime, today: date, actor: str
) -> dict[str, int]:
    """The open records: an operator's command since ours closes the record (and holds); a disable
    that expired or failed before the device applied it goes out again; in full mode, discharge is
    cut once the battery is at rest."""
    found = await q.open_disables(conn, scope=scope)
    if not found:
        return {"overridden": 0, "reissued": 0, "discharge_cut": 0}
    await q.lock_loans(conn, sorted({r["loan_id"] for r in found}))
    await q.open_disables(conn, scope=scope, lock=True)
    counts = {"overridden": 0, "reissued": 0, "discharge_cut": 0}
    for row in await q.open_disables(conn, scope=scope):  # read again, under the locks
        if row["latest_command_id"] != row["command_id"]:
            await q.release(conn, row["id"], reason="operator")
            await queries.audit(
                conn,
                actor="finance",
                action="overdue_disable_overridden",
                loan_id=row["loan_id"],
                battery_id=row["battery_id"],
                command_id=row["latest_command_id"],
                detail={"disable_id": row["id"], "disable_command_id": str(row["command_id"])},
            )
            counts["overridden"] += 1
            continue
        upgrade = (
            settings.finance_disable_mode == "full"
            and row["spec"] == "charging"
            and at_rest(row, now=now, settings=settings)
        )
        retry = row["latest_command_status"] in ("expired", "failed")
        if not (upgrade or retry):
            continue
        spec = "both" if upgrade else row["spec"]
        issued = await issue_commands(
            conn,
            battery_ids=[row["battery_id"]],
            action="disable",
            spec=spec,
            reason=REASON,
            requested_by=None,
            source=SOURCE,
            expires_in=timedelta(seconds=settings.command_ttl_seconds),
        )
        command_id = issued.commands[0]["id"]
        await q.replace_command(conn, row["id"], old=row["command_id"], new=command_id, spec=spec)
        await queries.audit(
            conn,
            actor=actor,
            action="battery_disabled",
            loan_id=row["loan_id"],
            instalment_id=row["instalment_id"],
            battery_id=row["battery_id"],
            command_id=command_id,
            detail={
                "reason": REASON,
                "spec": spec,
                "disable_id": row["id"],
                "follows": "at_rest" if upgrade else f"command {row['latest_command_status']}",
            },
        )
        if upgrade:
            sms = templates.battery_disabled(
                consumer_name=row["consumer_name"],
                battery_serial=row["battery_serial"],
                amount_due=await q.overdue_amount(conn, row["loan_id"], today),
                charging_only=False,
            )
            await _send(conn, [_message(row, sms, f"battery_disabled:overdue_disable:{row['id']}:both")])
        counts["discharge_cut" if upgrade else "reissued"] += 1
    return counts


# --- the way back -------------------------------------------------------------------------------


async def release_if_cleared(
    conn: AsyncConnection, *, loan_id: int, today: date, actor: str, payment_id: int
) -> UUID | None:
    """After a payment (the loan locked): if nothing is overdue any more, enable the battery again at
    once, unless an operator's command came after the overdue disable. Returns the enable command id."""
    records = await q.open_disables(conn, scope=Scope(), loan_id=loan_id)
    if not records or await q.has_overdue(conn, loan_id, today):
        return None
    record = records[0]
    await q.lock_battery(conn, record["battery_id"])
    record = (await q.open_disables(conn, scope=Scope(), loan_id=loan_id, lock=True))[0]
    if record["latest_command_id"] != record["command_id"]:  # not ours any more (the latest not cancelled)
        await q.release(conn, record["id"], reason="operator", payment_id=payment_id)
        await queries.audit(
            conn,
            actor=actor,
            action="overdue_disable_overridden",
            loan_id=loan_id,
            payment_id=payment_id,
            battery_id=record["battery_id"],
            command_id=record["latest_command_id"],
            detail={"disable_id": record["id"], "note": "an operator's command came after it: left as it is"},
        )
        return None
    issued = await issue_commands(
        conn,
        battery_ids=[record["battery_id"]],
        action="enable",
        spec=record["spec"],  # what we cut, no more: a switch off for another reason stays off
        reason=ENABLE_REASON,
        requested_by=None,
        source=SOURCE,
    )
    command_id: UUID = issued.commands[0]["id"]
    await q.release(conn, record["id"], reason="paid", enable_command_id=command_id, payment_id=payment_id)
    await queries.audit(
        conn,
        actor=actor,
        action="battery_enabled",
        loan_id=loan_id,
        payment_id=payment_id,
        battery_id=record["battery_id"],
        command_id=command_id,
        detail={"reason": ENABLE_REASON, "disable_id": record["id"]},
    )
    sms = templates.battery_enabled(
        consumer_name=record["consumer_name"], battery_serial=record["battery_serial"]
    )
    await _send(conn, [_message(record, sms, f"battery_enabled:overdue_disable:{record['id']}")])

    log.info("battery enabled after payment", extra={"loan_id": loan_id, "command_id": str(command_id)})
    return command_id


async def disable_again_after_reversal(
    conn: AsyncConnection, *, payment_id: int, settings: Settings, today: date, actor: str
) -> UUID | None:
    """After a reversal (the loan locked): the payment taken back had enabled the battery; if its
    loan is overdue beyond the threshold again and the enable still stands (no operator's command
    since), the charging cut is put back at once, as before the payment (no new warning: this one
    was sent). Returns the disable command id."""
    released = await q.released_by_payment(conn, payment_id)
    if released is None or released["latest_command_id"] != released["enable_command_id"]:
        return None
    now = await _now(conn)
    threshold = settings.finance_overdue_threshold_days
    rows = await q.to_disable(
        conn,
        scope=Scope(),
        today=today,
        threshold_days=threshold,
        warned_before=now,
        loan_ids=[released["loan_id"]],
    )
    rows = [r for r in rows if r["desired_charging"]]
    if not rows:
        return None
    (disabled,) = await _issue_disables(
        conn,
        rows=rows,
        spec="charging",  # never cut discharge here; in full mode the follow-up does, at rest
        settings=settings,
        rate=None,
        bulk_id=None,
        threshold_days=threshold,
        actor=actor,
        requested_by=None,
    )
    log.info("battery disabled again after a reversal", extra={"payment_id": payment_id, **disabled})
    return UUID(disabled["command_id"])
