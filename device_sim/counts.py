"""What the simulator says it sent, per battery, as a JSON file a harness can read.

The file is rewritten (atomically) at every summary, when asked to quiesce, and at exit. Each
battery's entry holds the readings the broker acknowledged (`acked`: each distinct reading once,
however often it was re-published after a lost connection), the readings not yet acknowledged
(`pending`), whether it is connected, the device's own state, and the commands it remembers with
their final stage (`applied`, `rejected`, or null while being applied).

`quiesced: true` means the fleet took no new readings and had nothing pending when written: then
`acked` is exactly what the backend must have stored, once each.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device_sim.device import Device


def snapshot(devices: list[Device], *, quiesced: bool, paused: bool) -> dict[str, Any]:
    batteries: dict[str, Any] = {}
    for device in devices:
        enabled, spec = device.state()
        batteries[device.serial] = {
            "acked": device.readings_acked,
            "pending": device.readings_pending,
            "connected": device.connected,
            "enabled": enabled,
            "spec": spec,
            "commands": device.commands_seen(),
        }
    return {"at": time.time(), "quiesced": quiesced, "paused": paused, "batteries": batteries}


def write(path: Path, body: dict[str, Any]) -> None:
    """Replace the file at once, so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
