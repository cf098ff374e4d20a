"""The faults of the release check, each injected into a running Stack (see run.py for a phase)."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.chaos.run import Fault, Outcome
from tests.chaos.stack import Stack

DATABASE_DOWN_S = 15.0
IMPORT_ROWS = 20_000


def kill_ingest(stack: Stack, _action: str) -> Outcome:
    stack.ingest[0].signal(signal.SIGKILL)
    return Outcome(time.time())


def kill_control(stack: Stack, _action: str) -> Outcome:
    assert stack.control is not None
    stack.control.signal(signal.SIGKILL)
    return Outcome(time.time())


def restart_broker(stack: Stack, _action: str) -> Outcome:
    assert stack.broker is not None
    stack.broker.restart()  # SIGTERM: it saves its persistent sessions and queued messages first
    return Outcome(time.time())


def stop_database(stack: Stack, _action: str) -> Outcome:
    assert stack.cluster is not None
    stack.cluster.stop("immediate")  # the server itself, every backend aborted as a crash would
    time.sleep(DATABASE_DOWN_S)
    stack.cluster.start()
    return Outcome(time.time())


def kill_api_mid_request(stack: Stack, action: str) -> Outcome:
    """SIGKILL the API while it holds requests open: battery-pack enables waiting for their devices."""
    serials = stack.rollout_serials()[-5:]
    answers: list[object] = []

    def request(serial: str) -> None:
        try:
            with stack.http("admin", timeout=60) as api:
                answers.append(
                    api.post(
                        f"/api/battery_pack/{serial}/enable?wait=30",
                        json={"operation_type": action, "reason": "chaos: cut off mid-request"},
                    ).status_code
                )
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)

    threads = [threading.Thread(target=request, args=(serial,)) for serial in serials]
    for thread in threads:
        thread.start()
    _wait_for_commands(stack, "chaos: cut off mid-request", len(serials))
    assert stack.api is not None
    stack.api.signal(signal.SIGKILL)
    for thread in threads:
        thread.join(30)
    return Outcome(time.time(), note=f"the requests cut by the kill ended with {answers}")


def _wait_for_commands(stack: Stack, reason: str, count: int, within_s: float = 10.0) -> None:
    """Until the API has issued `count` commands with this reason: its requests wait on the devices."""
    deadline = time.monotonic() + within_s
    started = datetime.now(UTC) - timedelta(seconds=30)
    with stack.db() as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) AS n FROM commands WHERE reason = %s AND created_at > %s",
                (reason, started),
            ).fetchone()
            if row and row["n"] >= count:
                return
            time.sleep(0.005)


def kill_api_mid_import(stack: Stack, _action: str) -> Outcome:
    """SIGKILL the API while it applies a CSV import of many packs: all of them or none remain."""
    prefix = f"IMP{uuid.uuid4().hex[:6].upper()}"
    csv = "asset_tag,model,location\n" + "".join(
        f"{prefix}{n:06d},Chaos Pack,Pune\n" for n in range(IMPORT_ROWS)
    )
    answer: list[object] = []

    def upload() -> None:
        try:
            with stack.http("admin", timeout=120) as api:
                answer.append(
                    api.post("/api/battery_pack", files={"file": ("packs.csv", csv, "text/csv")}).status_code
                )
        except httpx.HTTPError as exc:
            answer.append(type(exc).__name__)

    thread = threading.Thread(target=upload)
    thread.start()
    killed_mid_import = _wait_for_import(stack, thread)
    assert stack.api is not None
    stack.api.signal(signal.SIGKILL)
    thread.join(30)

    def after(stack: Stack) -> list[str]:
        with stack.db() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM batteries WHERE serial_number LIKE %s", (f"{prefix}%",)
            ).fetchone()
        stored = row["n"] if row else -1
        if stored not in (0, IMPORT_ROWS):
            return [f"import half-applied: {stored} of {IMPORT_ROWS} packs stored"]
        return []

    where = "while the database applied it" if killed_mid_import else "before the database got to it"
    return Outcome(
        time.time(), after=after, note=f"import of {IMPORT_ROWS} packs killed {where}; answer {answer}"
    )


def _wait_for_import(stack: Stack, thread: threading.Thread, within_s: float = 30.0) -> bool:
    """Wait until the API's connection runs the import's statements; False if it never did."""
    deadline = time.monotonic() + within_s
    with stack.db() as conn:
        while time.monotonic() < deadline and thread.is_alive():
            row = conn.execute(
                """SELECT 1 FROM pg_stat_activity
                   WHERE application_name = 'packfleet-api' AND state = 'active'
                     AND (query ILIKE '%%COPY%%' OR query ILIKE '%%INSERT INTO batteries%%')"""
            ).fetchone()
            if row:
                return True
            time.sleep(0.01)
    return False


def pause_scheduler(stack: Stack, _action: str) -> Outcome:
    """SIGSTOP the scheduler past its jobs' time, with an SMS queued meanwhile; then SIGCONT."""
    assert stack.scheduler is not None
    paused_for = 12.0  # past two periods of the 5 s rollup refresh
    stack.scheduler.signal(signal.SIGSTOP)
    with stack.http("admin") as api:
        queued = api.post(
            "/api/messaging/send-sms?wait=0",
            json={"to": "+919812345678", "message": f"chaos {uuid.uuid4().hex[:8]}"},
        )
    assert queued.status_code == 200, queued.text
    outbox_id = queued.json()["outbox_id"]
    time.sleep(paused_for)
    stack.scheduler.signal(signal.SIGCONT)
    resumed = time.time()

    def after(stack: Stack) -> list[str]:
        problems = []
        deadline = time.time() + 30
        row = None
        while time.time() < deadline:
            with stack.db() as conn:
                row = conn.execute(
                    "SELECT status, attempts FROM sms_outbox WHERE id = %s", (outbox_id,)
                ).fetchone()
            if row and row["status"] == "sent":
                break
            time.sleep(0.25)
        if not row or row["status"] != "sent" or row["attempts"] != 1:
            problems.append(f"the SMS queued during the pause is {row} (wanted sent, once)")
        if not _job_ran_after(stack.workdir / "scheduler.log", "telemetry.refresh_rollups", resumed):
            problems.append("the rollup refresh did not run after the scheduler resumed")
        return problems

    return Outcome(resumed, after=after)


def _job_ran_after(log: Path, job: str, at: float) -> bool:
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("msg") == "job done" and record.get("job") == job:
            when = time.mktime(time.strptime(record["ts"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            if when >= at - 1:
                return True
    return False


FAULTS = [
    Fault("SIGKILL ingest worker", kill_ingest, frozenset({"ingest1"})),
    Fault("SIGKILL control", kill_control, frozenset({"control"})),
    Fault("restart broker", restart_broker),
    Fault(f"database down {DATABASE_DOWN_S:.0f} s", stop_database),
    Fault("SIGKILL API mid-request", kill_api_mid_request, frozenset({"api"})),
    Fault("SIGKILL API mid-CSV-import", kill_api_mid_import, frozenset({"api"})),
    Fault("SIGSTOP scheduler", pause_scheduler),
]
