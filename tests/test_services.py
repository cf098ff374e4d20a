"""The test broker is the one PACKFLEET_TEST_MOSQUITTO names, configured for what its release can do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import services


def _fake_mosquitto(folder: Path, first_line: str, exit_code: int) -> Path:
    """An executable that answers `-h` the way mosquitto does (2.0 exits 3, 2.1 exits 0)."""
    binary = folder / "mosquitto"
    usage = "Usage: mosquitto [-c config_file] [ -d | --daemon ] [-h | --help] [-p port_number]"
    binary.write_text(f"#!/bin/sh\necho '{first_line}'\necho\necho '{usage}'\nexit {exit_code}\n")
    binary.chmod(0o755)
    return binary


def test_a_named_broker_that_is_missing_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKFLEET_TEST_MOSQUITTO", "/nonexistent/mosquitto")
    with pytest.raises(RuntimeError, match="PACKFLEET_TEST_MOSQUITTO"):
        services.mosquitto_binary()


def test_the_named_broker_and_its_release_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _fake_mosquitto(tmp_path, "mosquitto version 2.0.11", 3)
    monkeypatch.setenv("PACKFLEET_TEST_MOSQUITTO", str(old))
    assert services.mosquitto_binary() == str(old)
    assert services.mosquitto_version() == (2, 0, 11)
    assert services.persistence_lines() == ["persistence true", "autosave_interval 30"]


def test_a_2_1_broker_persists_through_the_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sbin").mkdir()
    (tmp_path / "lib").mkdir()
    new = _fake_mosquitto(tmp_path / "sbin", "mosquitto version 2.1.2", 0)
    plugin = tmp_path / "lib" / services.PERSIST_PLUGIN
    plugin.write_bytes(b"")
    monkeypatch.setenv("PACKFLEET_TEST_MOSQUITTO", str(new))
    monkeypatch.delenv("PACKFLEET_TEST_MOSQUITTO_PLUGIN", raising=False)
    assert services.mosquitto_version() == (2, 1, 2)
    assert services.persistence_lines() == [f"plugin {plugin}"]  # found beside the binary's prefix
    other = tmp_path / "elsewhere.so"
    other.write_bytes(b"")
    monkeypatch.setenv("PACKFLEET_TEST_MOSQUITTO_PLUGIN", str(other))
    assert services.persistence_lines() == [f"plugin {other}"]


def test_an_unreadable_version_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKFLEET_TEST_MOSQUITTO", str(_fake_mosquitto(tmp_path, "hello", 0)))
    with pytest.raises(RuntimeError, match="cannot read a version"):
        services.mosquitto_version()
