"""One fault at a time against a running Stack: load it, break it, wait for it to heal, check it.

A phase: a bulk roll-out of commands starts (the batteries' desired state flips: commands are in
flight during the fault), API traffic runs, the fault is injected; recovery is the time from the
fault's end until the API answers, every battery has a reading stored from after it, and a new
command is applied by its device. Then the simulator quiesces (device_sim/counts.py) and the
phase's books are checked: every acknowledged reading stored once, every command final once and
succeeded only where applied, desired = reported = the device's state, nothing done twice, and no
service exited except the one the fault killed.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos import invariants
from tests.chaos.stack import Stack

PROBE_TIMEOUT_S = 180.0
SETTLE_TIMEOUT_S = 180.0


@dataclass
class Outcome:
    """What injecting a fault returned: when it ended, and checks of its own for after the settle."""

    ended_at: float
    after: Callable[[Stack], list[str]] | None = None
    note: str = ""


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Stack, str], Outcome]  # (stack, the phase's action) -> outcome
    exits: frozenset[str] = frozenset()  # services the fault is expected to end


@dataclass
class PhaseResult:
    fault: str
    sent: int = 0
    stored: int = 0
    duplicated: int = 0
    redelivered: int = 0  # readings ingest was handed again and skipped as stored (at-least-once at work)
    commands: Counter[str] = field(default_factory=Counter)
    recovery_s: float | None = None
    api_ok: int = 0
    api_errors: int = 0
    restarts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    note: str = ""


class Traffic:
    """API reads in a loop while a fault runs: how many were answered, how many failed."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.ok = 0
        self.errors = 0
        self.statuses: Counter[str] = Counter()  # what the failures were: HTTP statuses, connection errors
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        serials = self.stack.serials()
        paths = ["/api/batteries?limit=20", "/api/telemetry/latest", "/api/battery_pack?limit=20"]
        with self.stack.http("dealer", timeout=5) as api:
            i = 0
            while not self._stop.wait(0.05):
                path = paths[i % 3] if i % 4 else f"/api/batteries/{serials[i % len(serials)]}"
                i += 1
                try:
                    answer = api.get(path)
                except httpx.HTTPError as exc:
                    self.errors += 1
                    self.statuses[type(exc).__name__] += 1
                    continue
                if answer.status_code == 200:
                    self.ok += 1
                else:
                    self.errors += 1
                    self.statuses[str(answer.status_code)] += 1
                    if answer.status_code >= 500 and not answer.headers.get("content-type", "").startswith(
                        "application/json"
                    ):
                        self.statuses["5xx without the spec's error body"] += 1


class Run:
    """The phases of one chaos run over one stack, keeping the books between them."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.results: list[PhaseResult] = []
        self._acked = 0
        self._stored = 0
        self._differences: dict[str, int] = {}  # acked − stored per battery at the last settle
        self._redelivered: dict[str, tuple[int, float]] = {}  # worker -> (its starts, its counter)
        self._phase = 0

    def phase(self, fault: Fault) -> PhaseResult:
        stack = self.stack
        result = PhaseResult(fault.name)
        started = time.time()
        self._phase += 1
        action = "disable" if self._phase % 2 else "enable"
        self._rollout(action, fault.name)
        if stack.finance is not None:
            stack.finance.during(self._phase)  # an overdue auto-disable and a payment, in flight
        with Traffic(stack) as traffic:
            time.sleep(1.0)  # the roll-out is under way and readings flow when the fault comes
            outcome = fault.inject(stack, action)
            result.note = outcome.note
            result.recovery_s = self._probe(outcome.ended_at, action, result)
        if stack.finance is not None:
            stack.finance.settle()
        result.api_ok, result.api_errors = traffic.ok, traffic.errors
        if traffic.statuses["500"]:
            result.problems.append(f"the API answered 500 {traffic.statuses['500']} times during the fault")
        if traffic.statuses:
            failures = ", ".join(f"{k}: {v}" for k, v in traffic.statuses.most_common())
            result.note = "; ".join(filter(None, [result.note, f"API failures during the fault: {failures}"]))
        self._settle(result, started)
        if outcome.after is not None:
            result.problems += outcome.after(stack)
        assert stack.supervisor is not None
        exits = [e.service for e in stack.supervisor.exits_since(started)]
        result.restarts = exits
        unexpected = [name for name in exits if name not in fault.exits]
        if unexpected:
            result.problems.append(f"services exited that the fault did not end: {unexpected}")
        missing = fault.exits - set(exits)
        if missing:
            result.problems.append(f"the fault was meant to end {sorted(missing)}, which never exited")
        self.results.append(result)
        return result

    def _rollout(self, action: str, fault: str) -> None:
        """A bulk command to every simulated battery, spread over a few seconds (commands in flight)."""
        serials = self.stack.rollout_serials()
        with self.stack.http("admin") as api:
            answer = api.post(
                "/api/commands/bulk",
                json={
                    "action": action,
                    "serials": serials,
                    "reason": f"chaos: roll-out during {fault}",
                    "rate_per_s": max(1.0, len(serials) / 6),
                },
            )
        assert answer.status_code == 202, answer.text

    def _probe(self, since: float, action: str, result: PhaseResult) -> float | None:
        """Seconds from `since` until the system serves, stores and commands again (None: never)."""
        stack = self.stack
        serials = stack.serials()
        deadline = time.time() + PROBE_TIMEOUT_S
        probe_command: str | None = None
        fresh = False
        while time.time() < deadline:
            time.sleep(0.25)
            if not stack.api_ready():
                continue
            try:
                with stack.db() as conn:
                    if not fresh:
                        row = conn.execute(
                            """SELECT count(*) AS n FROM battery_latest l
                               JOIN batteries b ON b.id = l.battery_id
                               WHERE b.serial_number = ANY(%s) AND l.ts > to_timestamp(%s)""",
                            (serials, since),
                        ).fetchone()
                        fresh = row is not None and row["n"] == len(serials)
                    if probe_command is None:
                        probe_command = self._probe_command(stack.rollout_serials()[0], action)
                        continue
                    row = conn.execute(
                        "SELECT status FROM commands WHERE id = %s", (probe_command,)
                    ).fetchone()
            except Exception:  # the database or API is still coming back
                continue
            if fresh and row is not None and row["status"] == "succeeded":
                return round(time.time() - since, 1)
        result.problems.append(
            f"not recovered within {PROBE_TIMEOUT_S:.0f} s "
            f"(fresh readings: {fresh}, probe command: {probe_command})"
        )
        return None

    def _probe_command(self, serial: str, action: str) -> str | None:
        with self.stack.http("admin") as api:
            answer = api.post(
                f"/api/battery_pack/{serial}/enable?wait=0",
                json={"operation_type": action, "reason": "chaos: recovery probe"},
            )
        if answer.status_code not in (200, 202):
            return None
        body = answer.json()
        return body.get("id") or None

    def _settle(self, result: PhaseResult, started: float) -> None:
        stack = self.stack
        assert stack.sim is not None
        stack.sim.signal(signal.SIGUSR1)
        snapshot = _wait(lambda: (s := stack.sim_counts()) and s["quiesced"] and s, SETTLE_TIMEOUT_S)
        if not snapshot:
            result.problems.append(
                "the simulator could not quiesce (devices offline or readings unacknowledged)"
            )
            stack.sim.signal(signal.SIGUSR2)
            return
        devices = snapshot["batteries"]
        acked = {serial: b["acked"] for serial, b in devices.items()}
        with stack.db() as conn:
            stored: dict[str, int] = {}

            def caught_up() -> bool:
                nonlocal stored
                stored, result.duplicated = invariants.stored_readings(conn, list(acked))
                return all(acked[s] - stored.get(s, 0) == self._differences.get(s, 0) for s in acked)

            _wait(caught_up, 60)
            result.problems += invariants.readings_match(acked, stored, self._differences)
            self._differences = {s: acked[s] - stored.get(s, 0) for s in acked}
            _wait(lambda: invariants.open_commands(conn) == 0, SETTLE_TIMEOUT_S)
            # Re-read the devices: the last acks were sent while the database caught up.
            stack.sim.signal(signal.SIGUSR1)
            time.sleep(0.5)
            devices = (stack.sim_counts() or snapshot)["batteries"]
            result.commands = invariants.commands_by_state(conn, started)
            result.problems += invariants.commands_final_once(conn, started)
            result.problems += invariants.succeeded_only_when_applied(conn, started, devices)
            result.problems += invariants.states_agree(conn, devices)
            result.problems += invariants.disabled_once(conn)
            result.problems += invariants.payments_once(conn)
        if stack.finance is not None:
            result.problems += stack.finance.check(devices)
        result.redelivered = self._count_redeliveries()
        total_acked, total_stored = sum(acked.values()), sum(stored.values())
        result.sent, result.stored = total_acked - self._acked, total_stored - self._stored
        self._acked, self._stored = total_acked, total_stored
        stack.sim.signal(signal.SIGUSR2)

    def _count_redeliveries(self) -> int:
        """Redeliveries since the last settle; a restarted worker's counter starts again from zero."""
        counted = 0
        starts = {w.name: w.starts for w in self.stack.ingest}
        for name, value in self.stack.redeliveries().items():
            seen_starts, seen = self._redelivered.get(name, (starts[name], 0.0))
            counted += int(value - seen) if seen_starts == starts[name] else int(value)
            self._redelivered[name] = (starts[name], value)
        return counted

    def table(self) -> str:
        head = (
            "fault",
            "sent",
            "stored",
            "dup",
            "redelivered",
            "commands by final state",
            "recovery s",
            "API ok/err",
            "exits",
        )
        rows = [head]
        for r in self.results:
            states = " ".join(f"{k}={v}" for k, v in sorted(r.commands.items())) or "-"
            recovery = "never" if r.recovery_s is None else f"{r.recovery_s:.1f}"
            rows.append(
                (
                    r.fault,
                    str(r.sent),
                    str(r.stored),
                    str(r.duplicated),
                    str(r.redelivered),
                    states,
                    recovery,
                    f"{r.api_ok}/{r.api_errors}",
                    ",".join(r.restarts) or "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for r in self.results:
            lines += [f"{r.fault}: {p}" for p in r.problems]
            if r.note:
                lines.append(f"{r.fault}: {r.note}")
        return "\n".join(lines)


def _wait(predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    return None
