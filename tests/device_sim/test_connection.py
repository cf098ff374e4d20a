"""Connection life against the real mosquitto: the will on a kill, store-and-forward across a broker
restart, batches of at most 1000, faults that touch the link, MQTT 3.1.1 on the embedded broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from device_sim.device import Device, Link
from device_sim.faults import Faults
from device_sim.main import SimOptions, run
from device_sim.model import DEFAULT_PACKS, FleetModel
from device_sim.transport import Driver
from schemas.device import Reading, ReadingBatch
from tests import services
from tests.device_sim.conftest import SimThread, sim_settings

WILL = b'{"online": false}'


def _readings(cloud, serial: str) -> list[dict]:  # type: ignore[no-untyped-def]
    out: list[dict] = []
    for payload in cloud.json(f"batteries/{serial}/telemetry"):
        if isinstance(payload, dict):
            out.extend(payload.get("readings", [payload]))
    return out


def _batches(cloud, serial: str) -> list[list[dict]]:  # type: ignore[no-untyped-def]
    return [
        p["readings"]
        for p in cloud.json(f"batteries/{serial}/telemetry")
        if isinstance(p, dict) and "readings" in p
    ]


def test_will_message_when_the_simulator_is_killed(
    mosquitto: services.Mosquitto, cloud_factory, prefix, tmp_path
) -> None:
    cloud = cloud_factory(mosquitto.port)
    env = {**os.environ, "PACKFLEET_MQTT_URL": mosquitto.url}
    env.pop("PACKFLEET_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "device_sim", "--batteries", "2", "--prefix", prefix, "--interval", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "sim.log", "w"),
    )
    try:
        serials = [f"{prefix}00001", f"{prefix}00002"]
        cloud.wait(lambda: all(cloud.seen(f"batteries/{s}/status") for s in serials), timeout=30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for serial in serials:
            cloud.wait(lambda s=serial: cloud.seen(f"batteries/{s}/status")[-1][1] == WILL)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # and it is retained: a newcomer learns the batteries are offline
    late = cloud_factory(mosquitto.port, topic=f"batteries/{prefix}00001/status")
    assert late.wait(lambda: late.seen())[0][1:3] == (WILL, True)


def test_backlog_uploaded_after_the_broker_restarts(
    own_mosquitto: services.Mosquitto, cloud_factory, prefix
) -> None:
    serial = f"{prefix}00001"
    # A persistent session: messages published while the cloud is away are kept for it.
    cloud = cloud_factory(own_mosquitto.port, persistent_id=f"cloud-{prefix}")
    with SimThread(sim_settings(own_mosquitto.url), SimOptions(count=1, prefix=prefix, interval=0.2)):
        cloud.wait(lambda: len(_readings(cloud, serial)) >= 5)
        own_mosquitto.stop()
        outage_from = time.time()
        time.sleep(2.0)
        own_mosquitto.start()
        outage_to = time.time()
        batches = cloud.wait(lambda: [b for b in _batches(cloud, serial) if len(b) >= 5], timeout=30)
        cloud.wait(lambda: len(_readings(cloud, serial)) >= 30, timeout=15)
    held = [Reading.model_validate(r).ts.timestamp() for r in batches[-1]]
    assert any(outage_from <= ts <= outage_to for ts in held)
    # Nothing lost: one reading every 0.2 s with no hole in it (duplicates are allowed).
    stamps = sorted({Reading.model_validate(r).ts.timestamp() for r in _readings(cloud, serial)})
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert max(gaps) < 0.6, f"a hole of {max(gaps):.2f}s in the readings"


def test_backlog_goes_up_in_batches_of_at_most_1000(
    mosquitto: services.Mosquitto, cloud_factory, prefix
) -> None:
    serial = f"{prefix}00001"
    cloud = cloud_factory(mosquitto.port, topic=f"batteries/{serial}/telemetry")

    async def main() -> None:
        driver = Driver(asyncio.get_running_loop())
        driver.start()
        link = Link(driver=driver, host="127.0.0.1", port=mosquitto.port, protocol=5)
        model = FleetModel([DEFAULT_PACKS[0]], seed=0)
        device = Device(serial=serial, index=0, model=model, link=link, faults=Faults(), seed=0)
        for _ in range(2500):  # an outage's worth, taken before the first connection
            device.record(model.readings([0])[0])
        assert await device.connect()
        await asyncio.to_thread(cloud.wait, lambda: sum(map(len, _batches(cloud, serial))) >= 2500)
        link.stopping = True
        device.go_offline()
        await asyncio.wait_for(link.all_offline.wait(), 5)
        await driver.close()

    asyncio.run(main())
    sizes = [len(b) for b in _batches(cloud, serial)]
    assert sizes == [1000, 1000, 500]
    for _topic, payload, _retain, _at in cloud.seen():
        assert len(payload) < 256 * 1024
        ReadingBatch.model_validate_json(payload)


def test_flapping_device_goes_offline_by_will_and_comes_back(
    mosquitto: services.Mosquitto, cloud_factory, prefix
) -> None:
    serial = f"{prefix}00001"
    cloud = cloud_factory(mosquitto.port, topic=f"batteries/{serial}/#")
    faults = Faults(flap=1.0, flap_offline_max_s=1.0)
    with SimThread(
        sim_settings(mosquitto.url), SimOptions(count=1, prefix=prefix, interval=0.2, faults=faults)
    ):
        status = f"batteries/{serial}/status"

        def came_back() -> bool:
            payloads = [m[1] for m in cloud.seen(status)]
            return (
                WILL in payloads
                and json.loads(payloads[-1]).get("online") is True
                and payloads.index(WILL) > 0
            )

        cloud.wait(came_back, timeout=20)
        cloud.wait(lambda: _batches(cloud, serial), timeout=20)  # what it held while away


def test_payload_faults_malformed_duplicates_skew_and_bursts(
    mosquitto: services.Mosquitto, cloud_factory, prefix
) -> None:
    cloud = cloud_factory(mosquitto.port)
    noisy = SimOptions(
        count=1,
        prefix=f"{prefix}N",
        interval=0.2,
        faults=Faults(malformed=1.0, duplicate=1.0, skew=1.0, skew_max_s=3600),
    )
    bursty = SimOptions(
        count=1, prefix=f"{prefix}B", interval=0.1, faults=Faults(backlog=1.0, backlog_readings=5)
    )
    settings = sim_settings(mosquitto.url)
    with SimThread(settings, noisy), SimThread(settings, bursty):
        n, b = f"{prefix}N00001", f"{prefix}B00001"
        cloud.wait(lambda: len(cloud.seen(f"batteries/{n}/telemetry")) >= 12 and len(_batches(cloud, b)) >= 2)
    payloads = [m[1] for m in cloud.seen(f"batteries/{n}/telemetry")]
    broken = 0
    for payload in payloads:
        try:
            Reading.model_validate_json(payload)
        except ValueError:
            broken += 1
    assert broken >= 3
    assert len(set(payloads)) < len(payloads)  # duplicates: the same bytes twice
    readings = [json.loads(p) for p in payloads if p.startswith(b'{"ts"') and p.endswith(b"}")]
    good = [r for r in readings if "soc" in r and r["voltage"] < 1000]
    skews = [datetime.fromisoformat(r["ts"]).timestamp() - time.time() for r in good]
    assert skews and all(abs(skew) > 5 for skew in skews)  # its clock is off by up to an hour
    assert all(len(batch) == 5 for batch in _batches(cloud, b))


def test_speaks_mqtt_311_to_the_embedded_broker(prefix) -> None:
    from packfleet.embedded import EmbeddedBroker

    serial = f"{prefix}00001"
    seen: list[tuple[str, bytes]] = []

    async def main() -> None:
        broker = EmbeddedBroker(services.free_port())
        url = await broker.start()
        cloud = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"cloud-{prefix}", protocol=paho.MQTTv311)
        cloud.on_message = lambda _c, _u, m: seen.append((m.topic, m.payload))
        await asyncio.to_thread(cloud.connect, "127.0.0.1", broker.port)
        cloud.subscribe("batteries/#", qos=1)
        cloud.loop_start()
        stop = asyncio.Event()
        sim = asyncio.create_task(
            run(sim_settings(url, protocol=3), stop, SimOptions(count=1, prefix=prefix, interval=0.2))
        )
        try:
            for _ in range(100):
                if any(t.endswith("/telemetry") for t, _ in seen) and any(
                    t.endswith("/status") for t, _ in seen
                ):
                    break
                await asyncio.sleep(0.1)
            now = int(time.time() * 1000)
            command_id = str(uuid.uuid4())
            command = {"id": command_id, "action": "disable", "issued_at": now, "expires_at": now + 60_000}
            cloud.publish(f"batteries/{serial}/cmd", json.dumps(command), qos=1)
            for _ in range(100):
                if sum(1 for t, _ in seen if t.endswith("/cmd/ack")) >= 2:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(sim, 15)
            await asyncio.sleep(0.5)
            cloud.loop_stop()
            cloud.disconnect()
            await broker.stop()

    asyncio.run(main())
    acks = [json.loads(p)["stage"] for t, p in seen if t == f"batteries/{serial}/cmd/ack"]
    assert acks == ["received", "applied"]
    assert any(t == f"batteries/{serial}/telemetry" for t, _ in seen)
    statuses = [json.loads(p) for t, p in seen if t == f"batteries/{serial}/status"]
    assert statuses[0]["online"] is True and statuses[-1]["online"] is False
