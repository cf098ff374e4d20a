"""The local `packfleet up`, found from a second shell through its data dir.

While it runs, `up` keeps `<data dir>/up.json` (its pid, database URL, API and broker addresses);
its JWT secret is `<data dir>/jwt_secret`. Operator commands run with no settings (`packfleet user
add`, `packfleet token`, ...) use these, so they work beside a running `up` as they would beside a
configured production stack.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

STATE_FILE = "up.json"
SECRET_FILE = "jwt_secret"


def jwt_secret_file(data_dir: Path, *, create: bool = False) -> str | None:
    """The demo stack's signing secret (created when asked), kept so tokens survive a restart."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        if not create:
            return None
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def write_state(data_dir: Path, **values: Any) -> None:
    path = data_dir / STATE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"pid": os.getpid(), **values}, indent=2))
    temporary.chmod(0o600)  # the database URL of the embedded server
    temporary.replace(path)


def remove_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


def running_stack(data_dir: Path) -> dict[str, Any] | None:
    """What the `up` running from this data dir wrote, if its process is alive."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state
