"""docker-compose.yml (not runnable here: no Docker engine) agrees with the CLI and the settings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from packfleet.cli import app
from packfleet.settings import Settings
from tests.services import PERSIST_PLUGIN, PERSIST_PLUGIN_SINCE

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


def test_the_broker_image_is_a_full_release_that_keeps_shared_subscriptions() -> None:
    image = COMPOSE["services"]["mosquitto"]["image"]
    name, _, tag = image.partition(":")
    assert name == "eclipse-mosquitto"
    release = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(-[a-z]+)?", tag)
    assert release, f"{image}: pin a full release (x.y.z), not a moving tag such as `2` or `latest`"
    version = tuple(int(part) for part in release.groups()[:3])
    assert version >= PERSIST_PLUGIN_SINCE, (
        f"{image}: the persist-sqlite plugin that keeps ingest's shared subscription over a restart "
        f"needs {'.'.join(map(str, PERSIST_PLUGIN_SINCE))} or later"
    )


def test_the_broker_persists_through_the_images_plugin_not_the_builtin_file() -> None:
    directives: dict[str, list[str]] = {}
    for line in (REPO / "mosquitto.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            directives.setdefault(key, []).append(value.strip())
    assert directives.get("plugin") == [f"/usr/lib/{PERSIST_PLUGIN}"]  # where the image installs it
    assert directives.get("persistence_location") == ["/mosquitto/data/"]  # the mqttdata volume
    # The built-in file drops $share subscriptions on restart, and 2.1 refuses both together.
    assert "persistence" not in directives
