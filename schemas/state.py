"""What a battery's (enabled, spec) pair means, and the battery status an operator reads from it.

A device describes its two switches, charging and discharging, with one pair: `spec` names the
switches `enabled` describes, and a switch it does not name is in the other position. So
`(True, "both")` is all on, `(False, "both")` all off, `(False, "charging")` charging off but
discharging on (as `(True, "discharging")` says too), and `(False, "discharging")` the reverse.
A command names switches too: `disable charging` turns charging off and leaves discharging as it was.
The cloud keeps the desired state in the same canonical form as the device reports it, so that the
two compare switch by switch.

Pure: no database, no broker; ingest, control and the API share it.
"""

from __future__ import annotations

from typing import Literal

Status = Literal["active", "inactive", "maintenance"]
# (charging on, discharging on)
Switches = tuple[bool, bool]


def switches(enabled: bool, spec: str | None) -> Switches:
    """Both switches of an (enabled, spec) pair; no spec means both."""
    if spec == "charging":
        return enabled, not enabled
    if spec == "discharging":
        return not enabled, enabled
    return enabled, enabled


def canonical(state: Switches) -> tuple[bool, str]:
    """The (enabled, spec) pair a device reports for these switches."""
    charging, discharging = state
    if charging == discharging:
        return charging, "both"
    return False, "charging" if not charging else "discharging"


def after_command(before: Switches | None, *, enable: bool, spec: str) -> Switches:
    """The switches once a command is applied; a switch it does not name stays as it was
    (on, when nothing is known of it: a battery starts enabled)."""
    charging, discharging = before if before is not None else (True, True)
    if spec in ("charging", "both"):
        charging = enable
    if spec in ("discharging", "both"):
        discharging = enable
    return charging, discharging


def in_sync(desired: tuple[bool, str | None], reported: tuple[bool | None, str | None]) -> bool:
    """Whether the device reports the desired switches (never, before it reported at all)."""
    if reported[0] is None:
        return False
    return switches(desired[0], desired[1]) == switches(reported[0], reported[1])


def status_of(state: Switches, *, wanted: str | None, current: str | None = None) -> Status:
    """The battery status these switches make: `active` while it can discharge (it still runs a
    vehicle), otherwise the disabled status asked for (`wanted`), else the one it had, else `inactive`."""
    if state[1]:
        return "active"
    for label in (wanted, current):
        if label == "maintenance":
            return "maintenance"
        if label == "inactive":
            return "inactive"
    return "inactive"
