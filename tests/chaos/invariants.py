"""What must hold once the system settles after a fault, checked against the database and the devices.

Each function returns a list of problems (empty: it holds), so a run reports every broken rule
of every fault rather than stopping at the first.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg

OPEN = ("queued", "sent", "delivered")
FINAL = ("succeeded", "failed", "expired", "cancelled")


def stored_readings(conn: psycopg.Connection[Any], serials: list[str]) -> tuple[dict[str, int], int]:
    """Readings stored per battery, and how many rows repeat a (battery, ts) already stored."""
    rows = conn.execute(
        """SELECT b.serial_number AS serial, count(t.ts) AS n, count(DISTINCT t.ts) AS distinct_n
           FROM batteries b LEFT JOIN telemetry t ON t.battery_id = b.id
           WHERE b.serial_number = ANY(%s) GROUP BY b.serial_number""",
        (serials,),
    ).fetchall()
    return {r["serial"]: r["n"] for r in rows}, sum(r["n"] - r["distinct_n"] for r in rows)


def readings_match(
    acked: dict[str, int], stored: dict[str, int], before: dict[str, int] | None = None
) -> list[str]:
    """Every reading the broker acknowledged to a device is stored once: no loss, nothing extra.

    `before` is each battery's difference (acked − stored) at the previous check, so a reading lost
    in one phase is reported there and not again in every later one."""
    before = before or {}
    wrong = {}
    for serial in acked:
        lost = acked[serial] - stored.get(serial, 0) - before.get(serial, 0)
        if lost:
            wrong[serial] = lost
    if not wrong:
        return []
    sample = dict(sorted(wrong.items())[:5])
    lost, extra = sum(n for n in wrong.values() if n > 0), -sum(n for n in wrong.values() if n < 0)
    return [f"{lost} readings lost, {extra} extra, over {len(wrong)} batteries (lost per battery: {sample})"]


def open_commands(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) AS n FROM commands WHERE status = ANY(%s)", (list(OPEN),)).fetchone()
    return int(row["n"]) if row else 0


def commands_by_state(conn: psycopg.Connection[Any], since: float) -> Counter[str]:
    rows = conn.execute(
        "SELECT status, count(*) AS n FROM commands WHERE created_at >= to_timestamp(%s) GROUP BY status",
        (since,),
    ).fetchall()
    return Counter({r["status"]: r["n"] for r in rows})


def commands_final_once(conn: psycopg.Connection[Any], since: float) -> list[str]:
    """Every command is in one final state, reached once (one final event in its audit trail)."""
    problems = []
    still_open = open_commands(conn)
    if still_open:
        problems.append(f"{still_open} commands never reached a final state")
    twice = conn.execute(
        """SELECT c.id, c.status, array_agg(e.status ORDER BY e.at) AS finals
           FROM commands c JOIN command_events e ON e.command_id = c.id AND e.status = ANY(%s)
           WHERE c.created_at >= to_timestamp(%s)
           GROUP BY c.id, c.status HAVING count(*) <> 1 OR bool_or(e.status <> c.status)
           LIMIT 5""",
        (list(FINAL), since),
    ).fetchall()
    if twice:
        problems.append(f"commands with other than one final event matching their status: {twice}")
    no_event = conn.execute(
        """SELECT count(*) AS n FROM commands c WHERE c.created_at >= to_timestamp(%s)
           AND c.status = ANY(%s) AND NOT EXISTS (
               SELECT 1 FROM command_events e WHERE e.command_id = c.id AND e.status = c.status)""",
        (since, list(FINAL)),
    ).fetchone()
    if no_event and no_event["n"]:
        problems.append(f"{no_event['n']} final commands without their final event")
    return problems


def succeeded_only_when_applied(
    conn: psycopg.Connection[Any], since: float, devices: dict[str, Any]
) -> list[str]:
    """A command is `succeeded` only if its device says it applied it, and a device applies
    nothing that the database calls failed or expired."""
    rows = conn.execute(
        """SELECT c.id::text AS id, c.status, b.serial_number AS serial
           FROM commands c JOIN batteries b ON b.id = c.battery_id
           WHERE c.created_at >= to_timestamp(%s)""",
        (since,),
    ).fetchall()
    unapplied, contradicted = [], []
    for row in rows:
        device = devices.get(row["serial"])
        if device is None:
            continue
        stage = device["commands"].get(row["id"])
        if row["status"] == "succeeded" and stage != "applied":
            unapplied.append((row["serial"], row["id"], stage))
        if row["status"] in ("failed", "expired") and stage == "applied":
            contradicted.append((row["serial"], row["id"], row["status"]))
    problems = []
    if unapplied:
        problems.append(
            f"{len(unapplied)} commands succeeded without the device's applied ack: {unapplied[:5]}"
        )
    if contradicted:
        problems.append(f"{len(contradicted)} commands applied by the device but {contradicted[:5]}")
    return problems


def states_agree(conn: psycopg.Connection[Any], devices: dict[str, Any]) -> list[str]:
    """Desired state, reported state and the device's own state are the same for every battery."""
    rows = conn.execute(
        """SELECT serial_number AS serial, desired_enabled, desired_spec, reported_enabled, reported_spec
           FROM batteries WHERE serial_number = ANY(%s)""",
        (list(devices),),
    ).fetchall()
    wrong = []
    for row in rows:
        device = devices[row["serial"]]
        want = (row["desired_enabled"], row["desired_spec"])
        if not (
            want == (row["reported_enabled"], row["reported_spec"]) == (device["enabled"], device["spec"])
        ):
            wrong.append(
                (row["serial"], want, (row["reported_enabled"], row["reported_spec"]), device["enabled"])
            )
    missing = set(devices) - {r["serial"] for r in rows}
    problems = (
        [f"{len(wrong)} batteries where desired, reported and device differ: {wrong[:5]}"] if wrong else []
    )
    if missing:
        problems.append(f"{len(missing)} simulated batteries missing from the database")
    return problems


def disabled_once(conn: psycopg.Connection[Any]) -> list[str]:
    """No battery gets two commands from one bulk roll-out, nor two open finance disables."""
    twice = conn.execute(
        """SELECT bulk_id, battery_id, count(*) AS n FROM commands WHERE bulk_id IS NOT NULL
           GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 5"""
    ).fetchall()
    problems = [f"batteries commanded twice by one roll-out: {twice}"] if twice else []
    finance = conn.execute("SELECT to_regclass('overdue_disables') IS NOT NULL AS present").fetchone()
    if finance and finance["present"]:
        # Finance (issue 11): one open auto-disable per battery, and one live disable command per open one.
        doubled = conn.execute(
            """SELECT c.battery_id, count(*) AS commands FROM commands c
               WHERE c.source = 'finance' AND c.action = 'disable' AND c.status <> 'cancelled'
               GROUP BY 1
               HAVING count(*) > (SELECT count(*) FROM overdue_disables d WHERE d.battery_id = c.battery_id)
               LIMIT 5"""
        ).fetchall()
        if doubled:
            problems.append(f"batteries disabled twice for one overdue: {doubled}")
    return problems


def payments_once(conn: psycopg.Connection[Any]) -> list[str]:
    """No payment recorded twice (finance, issue 11): one row per dealer and reference, allocated once."""
    present = conn.execute("SELECT to_regclass('loan_payments') IS NOT NULL AS present").fetchone()
    if not present or not present["present"]:
        return []
    doubled = conn.execute(
        """SELECT dealer_id, reference, count(*) AS n FROM loan_payments
           GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 5"""
    ).fetchall()
    over = conn.execute(
        """SELECT p.id, p.amount, sum(a.penalty + a.interest + a.principal) + p.prepaid_principal AS allocated
           FROM loan_payments p JOIN payment_allocations a ON a.payment_id = p.id
           GROUP BY p.id HAVING sum(a.penalty + a.interest + a.principal) + p.prepaid_principal > p.amount
           LIMIT 5"""
    ).fetchall()
    problems = [f"payments recorded twice: {doubled}"] if doubled else []
    if over:
        problems.append(f"payments allocated beyond their amount: {over}")
    return problems
