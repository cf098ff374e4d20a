"""Devices under the production broker setup: no anonymous access, each device logs in as its
serial and the repo's acl.conf keeps it to its own topics."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_sim.main import SimOptions
from tests import services
from tests.device_sim.conftest import SimThread, sim_settings

SERIALS = ("ACL00001", "ACL00002")


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[services.Mosquitto]:
    if services.mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("needs mosquitto and mosquitto_passwd: `apt-get install mosquitto`")
    passwd = tmp_path / "passwd"
    for user in ("control", "ingest", *SERIALS):
        flag = ["-c"] if not passwd.exists() else []
        subprocess.run(["mosquitto_passwd", *flag, "-b", str(passwd), user, f"{user}-pw"], check=True)
    broker = services.Mosquitto(
        tmp_path / "broker", anonymous=False, passwd=passwd, acl=services.REPO / "acl.conf"
    ).start()
    yield broker
    broker.stop()


def test_devices_log_in_as_their_serial_under_the_production_acl(
    secured_broker: services.Mosquitto, cloud_factory
) -> None:
    ingest = cloud_factory(secured_broker.port, topic="batteries/+/telemetry", username="ingest")
    control = cloud_factory(secured_broker.port, topic="batteries/+/cmd/ack", username="control")
    control.client.subscribe("batteries/+/status", qos=1)
    options = SimOptions(serials=list(SERIALS), interval=0.3, device_password="{serial}-pw")
    with SimThread(sim_settings(secured_broker.url), options):
        ingest.wait(lambda: all(ingest.seen(f"batteries/{s}/telemetry") for s in SERIALS))
        control.wait(lambda: all(control.seen(f"batteries/{s}/status") for s in SERIALS))
        command_id = control.command(SERIALS[1], "disable")
        topic = f"batteries/{SERIALS[1]}/cmd/ack"
        control.wait(lambda: len(control.json(topic)) >= 2)
        acks = control.json(topic)
        assert [a["stage"] for a in acks] == ["received", "applied"] and acks[0]["id"] == command_id
