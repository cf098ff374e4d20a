"""The whole path on real services: device → MQTT → ingest → API → command → device ack → API.

Ingest, control and the API run as their own processes (`packfleet ingest|control|api`); the
device is a plain paho-mqtt client speaking the contract, not project code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests import factories, services
from tests.conftest import JWT_SECRET, token_for
from tests.services import wait_for


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], IO[str]]:
    log = open(log_path, "w")  # closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "packfleet", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return proc, log


@pytest.fixture
def stack(database_url: str, mosquitto: services.Mosquitto, tmp_path: Path) -> Iterator[str]:
    """ingest, control and the API as separate processes; yields the API's base URL."""
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "PACKFLEET_DATABASE_URL": database_url,
        "PACKFLEET_MQTT_URL": mosquitto.url,
        "PACKFLEET_JWT_SECRET": JWT_SECRET,
        "PACKFLEET_LOG_JSON": "true",
        "PACKFLEET_INGEST_CLIENT_ID": f"e2e-ingest-{tag}",
        "PACKFLEET_INGEST_SHARE_GROUP": f"e2e{tag}",
        "PACKFLEET_CONTROL_CLIENT_ID": f"e2e-control-{tag}",
        "PACKFLEET_RATE_LIMIT_API": "10000/minute",  # the tests poll as fast as a dashboard never would
    }
    procs = [_spawn([name], env, tmp_path / f"{name}.log") for name in ("ingest", "control")]
    try:
        for attempt in range(3):  # a spare port can be taken by someone else before the API binds it
            port = services.free_port()
            api = _spawn(["api", "--port", str(port)], env, tmp_path / f"api{attempt}.log")
            procs.append(api)
            try:
                services.wait_for_port(port, timeout=20)
                break
            except TimeoutError:
                if api[0].poll() is None:
                    raise
        else:
            raise AssertionError("the API never bound a port")
        yield f"http://127.0.0.1:{port}"
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(15)
            finally:
                log.close()
        assert all(p.returncode in (0, -15) for p, _ in procs[:2]), [p.returncode for p, _ in procs]


class Device:
    """A battery as firmware would be: paho-mqtt and the JSON of the contract, nothing else."""

    def __init__(self, broker: services.Mosquitto, serial: str) -> None:
        self.serial = serial
        self.commands: list[dict] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"dev-{serial}", protocol=mqtt.MQTTv5
        )
        self.client.will_set(f"batteries/{serial}/status", json.dumps({"online": False}), qos=1, retain=True)
        self.client.on_message = self._on_command
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(f"batteries/{serial}/cmd", qos=1)
        self.client.loop_start()

    def publish(self, kind: str, payload: dict | bytes, *, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(f"batteries/{self.serial}/{kind}", data, qos=1, retain=retain).wait_for_publish(5)

    def _on_command(self, _client, _userdata, msg) -> None:  # type: ignore[no-untyped-def]
        command = json.loads(msg.payload)
        self.commands.append(command)
        enabled = command["action"] == "enable"
        now = datetime.now(UTC).isoformat()
        for stage in ("received", "applied"):
            ack = {"id": command["id"], "stage": stage, "enabled": enabled, "ts": now}
            self.client.publish(f"batteries/{self.serial}/cmd/ack", json.dumps(ack), qos=1)
        status = {"online": True, "enabled": enabled, "spec": command["spec"], "fw": "1.4.2", "ts": now}
        self.client.publish(f"batteries/{self.serial}/status", json.dumps(status), qos=1, retain=True)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_reading_to_api_and_command_round_trip(
    stack: str, mosquitto: services.Mosquitto, db: psycopg.Connection
) -> None:
    dealer = factories.dealer(db)
    dealer_user = factories.user(db, "dealer", dealer_id=dealer["id"])
    serial = factories.battery(db, dealer_id=dealer["id"])["serial_number"]
    headers = {"Authorization": f"Bearer {token_for(dealer_user)}"}
    device = Device(mosquitto, serial)
    try:
        device.publish(
            "status",
            {
                "online": True,
                "enabled": True,
                "spec": "both",
                "fw": "1.4.2",
                "ts": datetime.now(UTC).isoformat(),
            },
            retain=True,
        )
        newest = datetime.now(UTC).replace(microsecond=0)
        for age, soc in ((20, 88.0), (10, 87.5), (0, 87.0)):
            device.publish(
                "telemetry",
                {
                    "ts": (newest - timedelta(seconds=age)).isoformat(),
                    "voltage": 48.5,
                    "current": 12.25,
                    "soc": soc,
                    "temperature": 31.5,
                    "lat": 12.9716,
                    "lon": 77.5946,
                },
            )

        with httpx.Client(base_url=stack, headers=headers, timeout=10) as api:

            def latest() -> dict | None:
                body = api.get(f"/api/batteries/{serial}").json()
                telemetry = body.get("telemetry")
                return (
                    body
                    if telemetry and telemetry["timestamp"].startswith(newest.strftime("%Y-%m-%dT%H:%M:%S"))
                    else None
                )

            body = wait_for(latest)
            assert body["battery"]["serial_number"] == serial
            assert body["telemetry"]["voltage"] == "48.50"
            assert body["telemetry"]["current"] == "12.25"
            assert body["telemetry"]["soc"] == 87.0
            assert body["telemetry"]["location"] == {"lat": "12.971600", "lng": "77.594600"}
            assert (
                db.execute(
                    "SELECT count(*) AS n FROM telemetry t JOIN batteries b ON b.id = t.battery_id "
                    "WHERE b.serial_number = %s",
                    (serial,),
                ).fetchone()["n"]
                == 3
            )

            answer = api.post(f"/api/batteries/{serial}/control", json={"action": "inactive"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["desired_status"] == "inactive"  # asked; `status` waits for the device

            def finished() -> dict | None:
                commands = api.get(f"/api/batteries/{serial}/commands").json()
                return commands if commands and commands[0]["status"] == "succeeded" else None

            commands = wait_for(finished)
            assert device.commands and device.commands[0]["action"] == "disable"
            done = commands[0]
            assert done["id"] == device.commands[0]["id"]
            for stamp in ("created_at", "sent_at", "delivered_at", "finished_at"):
                assert done[stamp], f"{stamp} not set"

            detail = wait_for(
                lambda: (
                    (b := api.get(f"/api/batteries/{serial}").json())["control"]["reported"]["enabled"]
                    is False
                    and b
                )
            )
            assert detail["battery"]["status"] == "inactive"
            assert detail["control"]["desired"]["enabled"] is False
            assert detail["control"]["in_sync"] is True
            assert detail["control"]["pending_command"] is None
    finally:
        device.close()


def test_bad_telemetry_is_dead_lettered_and_ingest_keeps_going(
    stack: str, mosquitto: services.Mosquitto, db: psycopg.Connection
) -> None:
    dealer = factories.dealer(db)
    serial = factories.battery(db, dealer_id=dealer["id"])["serial_number"]
    device = Device(mosquitto, serial)
    try:
        device.publish("telemetry", b"{not json")
        device.publish("telemetry", {"ts": datetime.now(UTC).isoformat(), "voltage": 48.0, "soc": 50})
        device.publish(
            "telemetry", {"ts": datetime.now(UTC).isoformat(), "voltage": 48.0, "current": 1.0, "soc": 50.0}
        )
        topic = f"batteries/{serial}/telemetry"
        rows = wait_for(
            lambda: (
                (r := db.execute("SELECT reason FROM dead_letters WHERE topic = %s", (topic,)).fetchall())
                and len(r) >= 2
                and r
            )
        )
        assert len(rows) == 2 and all(r["reason"] for r in rows)
        wait_for(
            lambda: db.execute(
                "SELECT 1 FROM battery_latest l JOIN batteries b ON b.id = l.battery_id "
                "WHERE b.serial_number = %s",
                (serial,),
            ).fetchone()
        )
    finally:
        device.close()


def test_bad_api_body_gets_spec_error(stack: str, db: psycopg.Connection) -> None:
    admin = factories.user(db, "admin")
    answer = httpx.post(
        f"{stack}/api/batteries",
        json={"serial_number": "bad serial!", "health_score": 140},
        headers={"Authorization": f"Bearer {token_for(admin)}"},
    )
    assert answer.status_code == 400
    body = answer.json()
    assert set(body) >= {"error", "details", "code"}
    assert {d["field"] for d in body["details"]} == {"serial_number", "health_score"}
    unauthenticated = httpx.get(f"{stack}/api/batteries")
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]
