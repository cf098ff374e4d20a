"""`--provision` and pack specs from the real database; the command line's refusals."""

from __future__ import annotations

import logging

import psycopg
import typer
from typer.testing import CliRunner

from device_sim.cli import sim
from device_sim.main import SimOptions
from device_sim.model import PackSpec
from device_sim.provision import provision, stored_specs
from tests import services
from tests.device_sim.conftest import SimThread, sim_settings


def test_provision_creates_missing_batteries_once(database_url: str, prefix: str, caplog) -> None:
    caplog.set_level(logging.INFO)  # the log line's fields must not clash with LogRecord's own
    specs = {f"{prefix}1": PackSpec("Irasus 51V40", "LFP", 51.2, 40.0, "Prismatic")}
    assert provision(database_url, specs, location="Bengaluru") == 1
    assert provision(database_url, specs, location="Bengaluru") == 0
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT cell_chemistry, nominal_voltage, nominal_capacity, cell_type, status FROM batteries"
            " WHERE serial_number = %s",
            (f"{prefix}1",),
        ).fetchone()
    assert row == ("LFP", "51.2 V", "40 Ah", "Prismatic", "active")
    assert stored_specs(database_url, [f"{prefix}1", f"{prefix}-none"]) == {
        f"{prefix}1": PackSpec("Irasus 51V40", "LFP", 51.2, 40.0)
    }


def test_sim_with_provision_models_the_stored_pack(
    database_url: str, mosquitto: services.Mosquitto, cloud_factory, prefix: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO batteries (serial_number, cell_chemistry, nominal_voltage, nominal_capacity)"
            " VALUES (%s, 'LFP', '51.2 V', '40 Ah')",
            (f"{prefix}00001",),
        )
    cloud = cloud_factory(mosquitto.port)
    options = SimOptions(count=3, prefix=prefix, interval=0.3, provision=True)
    with SimThread(sim_settings(mosquitto.url, database_url=database_url), options):
        cloud.wait(lambda: cloud.json(f"batteries/{prefix}00001/telemetry"))
    with psycopg.connect(database_url) as conn:
        count = conn.execute(
            "SELECT count(*) FROM batteries WHERE serial_number LIKE %s", (f"{prefix}%",)
        ).fetchone()
    assert count == (3,)
    reading = cloud.json(f"batteries/{prefix}00001/telemetry")[0]
    reading = reading.get("readings", [reading])[0]
    assert 40 < reading["voltage"] < 58.5  # a 16-cell LFP pack, as the database says


def test_cli_refuses_bad_options() -> None:
    app = typer.Typer()
    app.command()(sim)
    runner = CliRunner()
    result = runner.invoke(app, ["--faults", "explode=0.5"])
    assert result.exit_code == 2 and "unknown fault" in result.output
    result = runner.invoke(
        app, ["--city", "somewhere", "--faults", ""], env={"PACKFLEET_MQTT_URL": "mqtt://x:1"}
    )
    assert result.exit_code == 2 and "LAT,LON" in result.output
    result = runner.invoke(
        app, ["--serials", "bad serial!"], env={"PACKFLEET_MQTT_URL": "mqtt://127.0.0.1:1"}
    )
    assert result.exit_code == 2 and "serial" in result.output
