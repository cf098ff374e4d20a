"""What a device's acknowledgements do to a command: pure rules, no database, no broker.

A command moves forward only: `received` takes a queued or sent command to `delivered`; `applied`
or `rejected` take an open one to `succeeded` or `failed` (an `applied` that overtook its
`received` also sets the delivery time). Anything else (a duplicate, a stage that arrives after
the command ended, an ack published on another battery's topic) changes nothing but is reported.
An `applied` or `rejected` ack still tells us what the device now is, even when it comes late.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

OPEN = frozenset({"queued", "sent", "delivered"})
NOT_YET_DELIVERED = frozenset({"queued", "sent"})


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
    reported: tuple[bool, str | None, datetime] | None = None  # enabled, spec, at
    ignored: list[tuple[Ack, str]] = field(default_factory=list)  # ack, why
    wrong_battery: list[Ack] = field(default_factory=list)
    latencies: list[tuple[str, float]] = field(default_factory=list)  # stage, seconds since last publish


def fold(command: dict[str, Any], acks: Sequence[Ack]) -> Outcome:
    """Apply these acks, in arrival order, to the command's stored state."""
    out = Outcome(
        status=command["status"], delivered_at=command["delivered_at"], finished_at=command["finished_at"]
    )
    enable = command["action"] == "enable"
    for ack in acks:
        if ack.serial != command["serial_number"]:
            out.wrong_battery.append(ack)
            continue
        if ack.stage in ("applied", "rejected") and (ack.enabled is not None or ack.stage == "applied"):
            # The device says what it now is, whether or not the command is still open.
            now_enabled = ack.enabled if ack.enabled is not None else enable
            spec = command["spec"] if ack.stage == "applied" else None
            if out.reported is None or out.reported[2] <= ack.at:
                out.reported = (now_enabled, spec, ack.at)
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
        if out.device_enabled is None and ack.stage == "applied":
            out.device_enabled = enable
        if ack.stage == "applied":
            out.status = "succeeded"
            out.events.append(("succeeded", ack.received_at, "device", None))
        else:
            out.status = "failed"
            out.error = ack.error or "rejected by the device"
            out.events.append(("failed", ack.received_at, "device", out.error))
        _latency(out, command, ack.stage, ack.received_at)
    return out


def _latency(out: Outcome, command: dict[str, Any], stage: str, at: datetime) -> None:
    published = command.get("last_sent_at")
    if published is not None:
        out.latencies.append((stage, max(0.0, (at - published).total_seconds())))
