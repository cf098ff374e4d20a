"""Multiplexed mode (load tests only): batteries sharing connections still speak the contract."""

from __future__ import annotations

import json

from device_sim.main import SimOptions
from tests import services
from tests.device_sim.conftest import SimThread, sim_settings


def test_batteries_sharing_connections_publish_and_obey(
    mosquitto: services.Mosquitto, cloud_factory, prefix
) -> None:
    cloud = cloud_factory(mosquitto.port)
    serials = [f"{prefix}{i:05d}" for i in range(1, 51)]
    options = SimOptions(count=50, prefix=prefix, interval=0.5, multiplexed=3)
    with SimThread(sim_settings(mosquitto.url), options):
        cloud.wait(lambda: all(cloud.seen(f"batteries/{s}/telemetry") for s in serials))
        assert all(json.loads(cloud.seen(f"batteries/{s}/status")[0][1])["online"] for s in serials)
        target = serials[37]
        command_id = cloud.command(target, "disable", "charging")
        acks = f"batteries/{target}/cmd/ack"
        cloud.wait(lambda: len(cloud.json(acks)) >= 2)
        assert [(a["id"], a["stage"]) for a in cloud.json(acks)] == [
            (command_id, "received"),
            (command_id, "applied"),
        ]
        cloud.wait(lambda: cloud.json(f"batteries/{target}/status")[-1]["spec"] == "charging")
        assert not any(cloud.seen(f"batteries/{s}/cmd/ack") for s in serials if s != target)
    # a clean stop still says offline, battery by battery
    cloud.wait(lambda: all(cloud.json(f"batteries/{s}/status")[-1]["online"] is False for s in serials))
