"""The overdue flow on real services: an EMI overdue → the SMS warning → auto-disable → the simulated
battery really stops charging → the payment → the battery charges again, every step in the audit trail.

Ingest, control and the scheduler (which delivers the SMS through the console provider) run as their
own processes (`packfleet ingest|control|scheduler`), the simulated battery is `device_sim` on the
real broker, and a paho client watches its telemetry as the cloud would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from device_sim.main import SimOptions, default_specs
from device_sim.model import CHARGING, FleetModel
from tests import services
from tests.api.conftest import World, bearer
from tests.api.finance.conftest import age_warnings, loan, pay
from tests.conftest import JWT_SECRET, make_settings
from tests.device_sim.conftest import SimThread
from tests.services import wait_for


@pytest.fixture
def services_up(database_url: str, mosquitto: services.Mosquitto, tmp_path: Path) -> Iterator[None]:
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "PACKFLEET_DATABASE_URL": database_url,
        "PACKFLEET_MQTT_URL": mosquitto.url,
        "PACKFLEET_JWT_SECRET": JWT_SECRET,
        "PACKFLEET_CONTROL_CLIENT_ID": f"fin-e2e-control-{tag}",
        "PACKFLEET_INGEST_CLIENT_ID": f"fin-e2e-ingest-{tag}",
        "PACKFLEET_INGEST_SHARE_GROUP": f"fin{tag}",
        "PACKFLEET_FINANCE_JOBS_ENABLED": "false",  # the test runs the overdue run itself
        "PACKFLEET_OUTBOX_POLL_SECONDS": "0.5",
    }
    procs = []
    for name in ("ingest", "control", "scheduler"):
        log = open(tmp_path / f"{name}.log", "w")  # closed with the process
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, "-m", "packfleet", name], env=env, stdout=log, stderr=subprocess.STDOUT
                ),
                log,
            )
        )
    try:
        yield
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, log in procs:
            proc.wait(15)
            log.close()


class Watcher:
    """The cloud's view of one battery's telemetry: (received at, current)."""

    def __init__(self, broker: services.Mosquitto, serial: str) -> None:
        self.readings: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{serial}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(f"batteries/{serial}/telemetry", qos=0)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        data = json.loads(msg.payload)
        with self.lock:
            for reading in data.get("readings", [data]):
                self.readings.append((time.time(), float(reading["current"])))

    def since(self, t: float) -> list[float]:
        with self.lock:
            return [current for at, current in self.readings if at >= t]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _charging_seed(serial: str) -> int:
    """A simulator seed whose battery starts on a charger, with a long way to go."""
    for seed in range(1000):
        model = FleetModel([default_specs([serial], seed)[serial]], seed=seed)
        if model.mode[0] == CHARGING and model.mode_left_s[0] > 900 and model.soc[0] < 70:
            return seed
    raise AssertionError("no seed starts charging")


def _command(db: psycopg.Connection, command_id: str) -> dict[str, Any]:
    return db.execute("SELECT * FROM commands WHERE id = %s", (command_id,)).fetchone()


def _sms(db: psycopg.Connection, phone: str) -> dict[str, str]:
    return {
        r["kind"]: r["status"]
        for r in db.execute("SELECT kind, status FROM sms_outbox WHERE to_phone = %s", (phone,))
    }


def test_overdue_disable_and_the_payment_that_enables(
    services_up: None,
    client: TestClient,
    world: World,
    mosquitto: services.Mosquitto,
    database_url: str,
) -> None:
    db = world.conn
    made = loan(client, world, months_ago=1, days_ago=10, amount=12000, tenure=12, rate=0)
    serial = made["battery"]["serial_number"]
    phone = world.consumer_a["phone"]
    watcher = Watcher(mosquitto, serial)
    options = SimOptions(serials=[serial], interval=0.25, seed=_charging_seed(serial), specs_from_db=False)
    try:
        with SimThread(make_settings(database_url, mosquitto.url), options):
            wait_for(lambda: [c for c in watcher.since(0) if c < -1], timeout=20)  # it is charging
            wait_for(
                lambda: db.execute(
                    "SELECT online FROM batteries WHERE serial_number = %s", (serial,)
                ).fetchone()["online"]
            )

            # 1. The EMI is 10 days overdue: the first run warns by SMS, disables nothing yet.
            warned = client.post("/api/finance/auto-disable", headers=bearer(world.dealer_a_user), json={})
            assert warned.json()["warned_count"] == 1 and warned.json()["disabled_count"] == 0
            wait_for(lambda: _sms(db, phone).get("overdue_warning") == "sent", timeout=20)

            # 2. Three days later (the warning's days before the disable), the next run cuts charging.
            age_warnings(db, made["id"])
            run = client.post(
                "/api/finance/auto-disable", headers=bearer(world.dealer_a_user), json={}
            ).json()
            assert run["disabled_batteries"] == [serial]
            disable_id = run["command_ids"][0]
            wait_for(lambda: _command(db, disable_id)["status"] == "succeeded", timeout=20)
            applied = time.time()
            state = db.execute(
                "SELECT reported_enabled, reported_spec FROM batteries WHERE serial_number = %s", (serial,)
            ).fetchone()
            assert state == {"reported_enabled": False, "reported_spec": "charging"}
            wait_for(lambda: len(watcher.since(applied + 0.5)) >= 8, timeout=20)
            assert all(c >= 0 for c in watcher.since(applied + 0.5)), "the battery still takes charge"
            wait_for(lambda: _sms(db, phone).get("battery_disabled") == "sent", timeout=20)

            # 3. The payment that clears the overdue switches it back on, nobody touching it.
            paid = pay(client, world, made["id"], "1000.00", f"UPI-{uuid.uuid4().hex[:10]}").json()
            enable_id = paid["enable_command_id"]
            assert enable_id and not paid["loan"]["battery_disabled_for_overdue"]
            wait_for(lambda: _command(db, enable_id)["status"] == "succeeded", timeout=20)
            enabled = time.time()
            wait_for(
                lambda: [c for c in watcher.since(enabled + 0.5) if c < -1], timeout=20
            )  # charging again
            wait_for(lambda: _sms(db, phone).get("battery_enabled") == "sent", timeout=20)
    finally:
        watcher.close()

    trail = client.get(f"/api/finance/loans/{made['id']}/audit", headers=bearer(world.admin)).json()
    assert [e["action"] for e in trail] == [
        "application_submitted",
        "application_approved",
        "overdue_warning_sent",
        "battery_disabled",
        "payment_recorded",
        "battery_enabled",
    ]
    assert [e["command_id"] for e in trail if e["command_id"]] == [disable_id, enable_id]
    events = client.get(f"/api/commands/{disable_id}", headers=bearer(world.admin)).json()["events"]
    assert [e["status"] for e in events][:1] == ["queued"] and events[-1]["status"] == "succeeded"
