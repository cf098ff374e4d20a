"""Settings: PACKFLEET_* variables, URL checks, refusal of placeholder secrets."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from packfleet.settings import MqttTarget, Settings


@pytest.fixture(autouse=True)
def _no_packfleet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("PACKFLEET_")]:
        monkeypatch.delenv(name)


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKFLEET_DATABASE_URL", "postgresql://u@db:5432/fleet")
    monkeypatch.setenv("PACKFLEET_MQTT_URL", "mqtt://ingest:s%40cret@broker:1884")
    monkeypatch.setenv("PACKFLEET_API_PORT", "9000")
    settings = Settings(_env_file=None)
    assert settings.require_database_url() == "postgresql://u@db:5432/fleet"
    assert (settings.mqtt.host, settings.mqtt.port) == ("broker", 1884)
    assert (settings.mqtt.username, settings.mqtt.password) == ("ingest", "s@cret")
    assert settings.api_port == 9000


@pytest.mark.parametrize("url", ["mysql://x/y", "http://db/x"])
def test_refuses_non_postgres_database_url(url: str) -> None:
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings(_env_file=None, database_url=url)


@pytest.mark.parametrize("url", ["http://broker:1883", "mqtt://:1883"])
def test_refuses_bad_mqtt_url(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, mqtt_url=url)


@pytest.mark.parametrize("secret", ["changeme", "secret", "short"])
def test_refuses_placeholder_or_short_jwt_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(_env_file=None, jwt_secret=secret)


def test_missing_values_are_explained() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(RuntimeError, match="PACKFLEET_DATABASE_URL"):
        settings.require_database_url()
    with pytest.raises(RuntimeError, match="PACKFLEET_JWT_SECRET"):
        settings.require_jwt_secret()


def test_mqtt_target_defaults_port_and_hides_password() -> None:
    target = MqttTarget("mqtt://dev:pw@127.0.0.1")
    assert target.port == 1883
    assert "pw" not in repr(target)
