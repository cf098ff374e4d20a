"""docker-compose.yml (not runnable here: no Docker engine) agrees with the CLI and the settings."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from packfleet.cli import app
from packfleet.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _packfleet_commands() -> list[tuple[str, list[str]]]:
    found = []
    for name, service in COMPOSE["services"].items():
        command = service.get("command")
        if isinstance(command, list) and command and command[0] == "packfleet":
            found.append((name, command[1:]))
    return found


def test_every_packfleet_command_and_option_exists() -> None:
    runner = CliRunner()
    commands = _packfleet_commands()
    assert {c[0] for _, c in commands} >= {"api", "ingest", "control", "scheduler", "migrate"}
    for service, argv in commands:
        words = [a for a in argv if not a.startswith("-")]
        options = [a.split("=")[0] for a in argv if a.startswith("--")]
        path = words[:1]
        helped = runner.invoke(app, [*path, "--help"], terminal_width=400)
        assert helped.exit_code == 0, f"{service}: `packfleet {' '.join(path)}` does not exist"
        for option in options:
            assert option in helped.output, f"{service}: `packfleet {path[0]}` has no option {option}"


def test_every_packfleet_variable_is_a_setting() -> None:
    fields = {f"PACKFLEET_{name.upper()}" for name in Settings.model_fields}
    used: set[str] = set()
    for service in COMPOSE["services"].values():
        environment = service.get("environment") or {}
        if isinstance(environment, dict):
            used |= {k for k in environment if k.startswith("PACKFLEET_")}
    for anchor in COMPOSE.get("x-packfleet", {}).get("environment", {}):
        used.add(anchor)
    cli_only = {"PACKFLEET_NBFC_SIM_SECRET"}  # read by `packfleet nbfc-sim` itself (typer envvar)
    unknown = {v for v in used if v.startswith("PACKFLEET_")} - fields - cli_only
    assert not unknown, f"docker-compose.yml sets variables no setting reads: {sorted(unknown)}"
