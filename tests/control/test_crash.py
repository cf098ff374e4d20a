"""State lives in the database: SIGKILL mid-flight loses nothing; two control processes never double-send."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from control.commands import issue_commands
from tests import factories, services
from tests.conftest import make_settings
from tests.control.conftest import FAST
from tests.control.devices import ControlProcess, Device, wait_for

FINAL = ("succeeded", "failed", "expired", "cancelled")


def _bulk(url: str, battery_ids: list[int], *, action: str, rate: float) -> list[str]:
    async def go() -> list[str]:
        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
            issued = await issue_commands(
                conn,
                battery_ids=battery_ids,
                action=action,  # type: ignore[arg-type]
                spec="both",
                reason="crash test",
                requested_by=None,
                source="test",
                expires_in=timedelta(seconds=120),
                rate_per_s=rate,
            )
            await conn.commit()
            return [str(c["id"]) for c in issued.commands]

    return asyncio.run(go())


def _fleet(
    db: psycopg.Connection, broker: services.Mosquitto, n: int, mode: str
) -> tuple[list[dict], list[Device]]:
    dealer = factories.dealer(db)
    batteries = [factories.battery(db, dealer_id=dealer["id"]) for _ in range(n)]
    with ThreadPoolExecutor(8) as pool:  # each device waits for its broker round trips
        devices = list(pool.map(lambda b: Device(broker.port, b["serial_number"], mode=mode), batteries))
    return batteries, devices


def _check_delivered_once(db: psycopg.Connection, ids: list[str], devices: list[Device]) -> list[dict]:
    """Every command final exactly once, published as new exactly once, and never under a new id."""
    rows = db.execute(
        "SELECT id::text AS id, status, attempts FROM commands WHERE id = ANY(%s::uuid[])", (ids,)
    ).fetchall()
    assert len(rows) == len(ids) and all(r["status"] in FINAL for r in rows), Counter(
        r["status"] for r in rows
    )
    events = db.execute(
        """SELECT command_id::text AS id, status, detail FROM command_events
           WHERE command_id = ANY(%s::uuid[])""",
        (ids,),
    ).fetchall()
    first_sends = Counter(e["id"] for e in events if e["status"] == "sent" and e["detail"] is None)
    finals = Counter(e["id"] for e in events if e["status"] in FINAL)
    assert all(first_sends[i] == 1 for i in ids), [i for i in ids if first_sends[i] != 1]
    assert all(finals[i] == 1 for i in ids)
    received = {c["id"] for d in devices for _, c in d.received}
    assert received <= set(ids), "a device got a command nobody issued"
    for device in devices:
        assert len(device.applied) == len(set(device.applied)), "a device applied a command twice"
    return rows


def test_sigkill_mid_flight_then_restart_loses_nothing(database_url, mosquitto, db, tmp_path: Path) -> None:
    settings = make_settings(
        database_url,
        mosquitto.url,
        **{**FAST, "command_retry_base_seconds": 0.5, "command_retry_max_seconds": 1.0},
    )
    batteries, devices = _fleet(db, mosquitto, 24, "slow")
    control = ControlProcess(settings, f"crash-{uuid.uuid4().hex[:8]}", tmp_path / "control.log").start()
    try:
        ids = _bulk(database_url, [b["id"] for b in batteries], action="disable", rate=60)  # over 0.5 s
        # Kill it while commands are queued, sent and delivered but not yet applied.
        wait_for(lambda: sum(len(d.received) > 0 for d in devices) >= 6, timeout=10)
        control.kill()
        states = Counter(
            r["status"]
            for r in db.execute("SELECT status FROM commands WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()
        )
        assert states["succeeded"] < len(ids), "killed too late to prove anything"
        time.sleep(0.5)  # the devices apply and acknowledge while control is down
        control.start()  # same client id: the broker hands over the acks it queued
        wait_for(
            lambda: (
                db.execute(
                    "SELECT count(*) AS n FROM commands WHERE id = ANY(%s::uuid[])"
                    " AND status IN ('queued', 'sent', 'delivered')",
                    (ids,),
                ).fetchone()["n"]
                == 0
            ),
            timeout=30,
        )
        rows = _check_delivered_once(db, ids, devices)
        assert all(r["status"] == "succeeded" for r in rows)
        assert all(not d.enabled for d in devices)
    finally:
        assert control.stop() == 0
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(Device.close, devices))


def test_two_control_processes_split_the_work_without_double_publishing(
    database_url, mosquitto, db, tmp_path: Path
) -> None:
    settings = make_settings(database_url, mosquitto.url, **FAST)  # retries 2 s apart: none expected
    batteries, devices = _fleet(db, mosquitto, 30, "ack")
    first = ControlProcess(settings, f"twin-a-{uuid.uuid4().hex[:8]}", tmp_path / "a.log").start()
    second = ControlProcess(settings, f"twin-b-{uuid.uuid4().hex[:8]}", tmp_path / "b.log").start()
    try:
        ids: list[str] = []
        for action in ("disable", "enable"):
            wave = _bulk(database_url, [b["id"] for b in batteries], action=action, rate=400)
            ids += wave
            wait_for(
                lambda wave=wave: (
                    db.execute(
                        "SELECT count(*) AS n FROM commands"
                        " WHERE id = ANY(%s::uuid[]) AND status = 'succeeded'",
                        (wave,),
                    ).fetchone()["n"]
                    == len(wave)
                ),
                timeout=20,
            )
        rows = _check_delivered_once(db, ids, devices)
        twice = [r["id"] for r in rows if r["attempts"] != 1]
        assert not twice, " | ".join(
            f"{e['status']} {e['at']:%S.%f} {e['actor']} {e['detail']}"
            for e in db.execute(
                "SELECT status, at, actor, detail FROM command_events WHERE command_id = %s ORDER BY at, id",
                (twice[0],),
            ).fetchall()
        )
        publishers = db.execute(
            "SELECT DISTINCT actor FROM command_events"
            " WHERE status = 'sent' AND command_id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
        assert {p["actor"] for p in publishers} == {
            f"control:{first.client_id}",
            f"control:{second.client_id}",
        }
        per_command = Counter(c["id"] for d in devices for _, c in d.received)
        assert set(per_command.values()) == {1}
        for device in devices:  # in order: the disable, then the enable
            assert [c["action"] for _, c in device.received] == ["disable", "enable"]
    finally:
        assert first.stop() == 0
        assert second.stop() == 0
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(Device.close, devices))
