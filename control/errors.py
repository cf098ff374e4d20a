"""Errors of the control domain, mapped to HTTP by the API.

ControlError             anything the control domain refuses
├── BatteryNotFound      no such battery (or it was deleted)
├── CommandNotFound      no such command
└── NotCancellable       the command is delivered or already final
"""

from __future__ import annotations


class ControlError(Exception):
    """A command the control domain refuses."""


class BatteryNotFound(ControlError):
    """No battery with this id or serial."""


class CommandNotFound(ControlError):
    """No command with this id."""


class NotCancellable(ControlError):
    """Only a queued or sent command can be cancelled."""

    def __init__(self, status: str) -> None:
        super().__init__(f"a {status} command cannot be cancelled")
        self.status = status
