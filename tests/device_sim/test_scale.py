"""A few thousand batteries on one loop, each with its own connection (slow: run with -m slow)."""

from __future__ import annotations

import time

import pytest

from device_sim.main import SimOptions
from tests import services
from tests.device_sim.conftest import SimThread, sim_settings


@pytest.mark.slow
def test_thousands_of_batteries_connect_and_keep_their_rate(
    own_mosquitto: services.Mosquitto, cloud_factory
) -> None:
    batteries, interval = 3000, 3.0
    cloud = cloud_factory(own_mosquitto.port, topic="batteries/+/telemetry")
    with SimThread(sim_settings(own_mosquitto.url), SimOptions(count=batteries, interval=interval)):
        cloud.wait(lambda: len(cloud.seen()) >= batteries, timeout=120)
        start, t0 = len(cloud.seen()), time.monotonic()
        time.sleep(4 * interval)
        rate = (len(cloud.seen()) - start) / (time.monotonic() - t0)
    senders = {topic for topic, *_ in cloud.seen()}
    assert len(senders) == batteries
    assert rate >= 0.9 * batteries / interval
