"""A ticket's status moves (pure; no database).

    open ──assign──► assigned ──► in_progress ──► resolved ──► closed
      ▲                 │ (reassign: stays assigned)        │
      └──────────── reopen (resolved → open, unassigned) ◄──┘

Anything else is refused, naming the ticket's current status.
"""

from __future__ import annotations

STATUSES = ("open", "assigned", "in_progress", "resolved", "closed")
ACTIVE = ("open", "assigned", "in_progress")
DONE = ("resolved", "closed")

# Moves made by POST /tickets/{id}/update; assignment (open → assigned) has routes of its own.
UPDATE_MOVES: dict[str, tuple[str, ...]] = {
    "open": (),
    "assigned": ("in_progress",),
    "in_progress": ("resolved",),
    "resolved": ("closed", "open"),
    "closed": (),
}
ASSIGNABLE = ("open", "assigned")


class MoveRefused(ValueError):
    """The ticket cannot go from its current status to the one asked for."""

    def __init__(self, current: str, wanted: str, allowed: tuple[str, ...]) -> None:
        self.current, self.wanted, self.allowed = current, wanted, allowed
        options = ", ".join(allowed) if allowed else "none"
        super().__init__(f"A {current} ticket cannot move to {wanted} (allowed from {current}: {options})")


def check_update(current: str, wanted: str) -> None:
    """Raise MoveRefused unless `current → wanted` is an update move (the same status is no move)."""
    if wanted != current and wanted not in UPDATE_MOVES[current]:
        raise MoveRefused(current, wanted, UPDATE_MOVES[current])


def check_assign(current: str) -> None:
    if current not in ASSIGNABLE:
        raise MoveRefused(current, "assigned", ("assigned",) if current == "open" else ())
