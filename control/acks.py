"""What a device's acknowledgements do to a command: pure rules, no database, no broker.

A command moves forward only: `received` takes a queued or sent command to `delivered`; `applied`
or `rejected` end an open one (an `applied` that overtook its `received` also sets the delivery
time). Anything else (a duplicate, a stage that arrives after the command ended, an ack published
on another battery's topic) changes nothing but is reported.

A command succeeds only when the device says it is in the commanded state: an `applied` ack whose
`enabled` is the opposite of the command, or that does not say, fails it (the device has just told
us it did not do it, or has not told us that it did), and is reported as a contradiction. An ack's
`enabled` describes the switches the command names; whenever an ack carries it, even late, it
tells us what the device now is. An ack never says more than it carries: without `enabled` it
changes nothing of the reported state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

OPEN = frozenset({"queued", "sent", "delivered"})
NOT_YET_DELIVERED = frozenset({"queued", "sent"})

# Contradiction kinds (metric label values)
OPPOSITE_STATE = "opposite_state"
STATE_NOT_REPORTED = "state_not_reported"


@dataclass(frozen=True)
class Ack:
    """One acknowledgement as received on `batteries/{serial}/cmd/ack`."""

    serial: str
    id: UUID
    stage: str
    enabled: bool | None
    error: str | None
    ts: datetime | None
    received_at: datetime
    topic: str
    payload: bytes

    @property
    def at(self) -> datetime:
        """When the device says it happened; never later than we heard of it (device clocks drift)."""
        return min(self.ts, self.received_at) if self.ts is not None else self.received_at


@dataclass(frozen=True)
class Report:
    """What an ack says the device now is: the switches `spec` names are `enabled`, as of `at`."""

    enabled: bool
    spec: str
    at: datetime


@dataclass
class Outcome:
    """The folded effect of a batch of acks on one command."""

    status: str
    delivered_at: datetime | None
    finished_at: datetime | None
    error: str | None = None
    device_enabled: bool | None = None
    changed: bool = False
    # (status, at, actor, detail) for the audit trail
    events: list[tuple[str, datetime, str, str | None]] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)  # in arrival order
    ignored: list[tuple[Ack, str]] = field(default_factory=list)  # ack, why
    wrong_battery: list[Ack] = field(default_factory=list)
    contradictions: list[tuple[Ack, str, str]] = field(default_factory=list)  # ack, kind, description
    latencies: list[tuple[str, float]] = field(default_factory=list)  # stage, seconds since last publish


def fold(command: dict[str, Any], acks: Sequence[Ack]) -> Outcome:
    """Apply these acks, in arrival order, to the command's stored state."""
    out = Outcome(
        status=command["status"], delivered_at=command["delivered_at"], finished_at=command["finished_at"]
    )
    for ack in acks:
        if ack.serial != command["serial_number"]:
            out.wrong_battery.append(ack)
            continue
        if ack.stage != "received" and ack.enabled is not None:
            out.reports.append(Report(ack.enabled, command["spec"], _when(ack, command)))
        contradiction = _contradiction(command, ack) if ack.stage == "applied" else None
        if contradiction is not None:
            out.contradictions.append((ack, *contradiction))
        if ack.stage == "received":
            if out.status in NOT_YET_DELIVERED:
                out.status, out.delivered_at, out.changed = "delivered", ack.received_at, True
                out.events.append(("delivered", ack.received_at, "device", None))
                _latency(out, command, "received", ack.received_at)
            else:
                out.ignored.append((ack, f"received while {out.status}"))
            continue
        if out.status not in OPEN:
            out.ignored.append((ack, f"{ack.stage} while {out.status}"))
            continue
        if out.delivered_at is None:
            out.delivered_at = ack.received_at
            out.events.append(("delivered", ack.received_at, "device", f"implied by {ack.stage}"))
        out.finished_at, out.changed = ack.received_at, True
        out.device_enabled = ack.enabled
        if ack.stage == "applied" and contradiction is None:
            out.status = "succeeded"
            out.events.append(("succeeded", ack.received_at, "device", None))
        else:
            out.status = "failed"
            if contradiction is not None:
                out.error = contradiction[1]
            else:
                out.error = ack.error or "rejected by the device"
            out.events.append(("failed", ack.received_at, "device", out.error))
        _latency(out, command, ack.stage, ack.received_at)
    return out


def _contradiction(command: dict[str, Any], ack: Ack) -> tuple[str, str] | None:
    """(kind, description) when an `applied` ack does not confirm the commanded state."""
    action, spec = command["action"], command["spec"]
    if ack.enabled is None:
        return STATE_NOT_REPORTED, (
            f"the device acknowledged the {action} ({spec}) as applied without saying whether it is "
            "enabled: its state is unconfirmed"
        )
    if ack.enabled != (action == "enable"):
        state = "enabled" if ack.enabled else "disabled"
        return OPPOSITE_STATE, (
            f"the device acknowledged the {action} ({spec}) as applied but reports it is {state}: "
            "the opposite state"
        )
    return None


def _when(ack: Ack, command: dict[str, Any]) -> datetime:
    """The ack's time, but not before the command was first published: a device whose clock
    reset (1970, year 1) must not date its report before older ones, where it would be ignored."""
    published: datetime | None = command.get("sent_at")
    at = ack.at
    if published is not None and at < published:
        return min(published, ack.received_at)
    return at


def _latency(out: Outcome, command: dict[str, Any], stage: str, at: datetime) -> None:
    published = command.get("last_sent_at")
    if published is not None:
        out.latencies.append((stage, max(0.0, (at - published).total_seconds())))
