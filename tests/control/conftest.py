"""Fixtures of the control tests: settings with short retries, control in a thread, test devices."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from packfleet.settings import Settings
from tests import factories, services
from tests.conftest import make_settings, token_for
from tests.control.devices import ControlThread, Device

FAST = {
    "command_retry_base_seconds": 2.0,
    "command_retry_max_seconds": 4.0,
    "command_ttl_seconds": 60,
    "command_bulk_rate_per_s": 1000.0,
}


@pytest.fixture
def control_settings(database_url: str, mosquitto: services.Mosquitto) -> Settings:
    return make_settings(database_url, mosquitto.url, **FAST)


@pytest.fixture
def control(control_settings: Settings) -> Iterator[ControlThread]:
    """A running control service (in a thread) with its own MQTT session."""
    runner = ControlThread(control_settings, f"test-control-{uuid.uuid4().hex[:8]}").start()
    yield runner
    runner.stop()


@pytest.fixture
def devices(mosquitto: services.Mosquitto) -> Iterator[Callable[..., Device]]:
    made: list[Device] = []

    def make(serial: str, **kwargs: object) -> Device:
        device = Device(mosquitto.port, serial, **kwargs)  # type: ignore[arg-type]
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()


@pytest.fixture
def api(control_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(control_settings)) as client:
        yield client


@pytest.fixture
def dealer_setup(db: psycopg.Connection) -> dict:
    """A dealer with a user, a battery, and an auth header."""
    dealer = factories.dealer(db)
    user = factories.user(db, "dealer", dealer_id=dealer["id"])
    battery = factories.battery(db, dealer_id=dealer["id"])
    return {
        "dealer": dealer,
        "user": user,
        "battery": battery,
        "serial": battery["serial_number"],
        "headers": {"Authorization": f"Bearer {token_for(user)}"},
    }


def command_row(db: psycopg.Connection, command_id: str) -> dict:
    return db.execute("SELECT * FROM commands WHERE id = %s", (command_id,)).fetchone()


def events_of(db: psycopg.Connection, command_id: str) -> list[dict]:
    return db.execute(
        "SELECT status, at, actor, detail FROM command_events WHERE command_id = %s ORDER BY at, id",
        (command_id,),
    ).fetchall()
