"""The simulator against the real mosquitto, with a paho client playing the cloud: status, telemetry,
command acks in order, repeated ids, invalid commands, and the faults that touch commands."""

from __future__ import annotations

import json
import logging

from device_sim.faults import Faults
from device_sim.main import SimOptions
from schemas.device import Reading, Status
from tests import services
from tests.device_sim.conftest import SimThread, sim_settings


def _acks(cloud, serial: str, command_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [
        a
        for a in cloud.json(f"batteries/{serial}/cmd/ack")
        if isinstance(a, dict) and a.get("id") == command_id
    ]


def test_status_and_telemetry_follow_the_contract(
    mosquitto: services.Mosquitto, cloud_factory, prefix, caplog
) -> None:
    caplog.set_level(logging.DEBUG)  # every log line is built, so their fields are checked too
    cloud = cloud_factory(mosquitto.port)
    options = SimOptions(count=3, prefix=prefix, interval=0.3, seed=4, summary_every=0.2)
    with SimThread(sim_settings(mosquitto.url), options):
        serial = f"{prefix}00001"
        cloud.wait(lambda: len(cloud.seen(f"batteries/{serial}/telemetry")) >= 3)
        status = Status.model_validate(cloud.json(f"batteries/{serial}/status")[0])
        assert status.online is True and status.enabled is True and status.spec == "both" and status.fw
        for payload in cloud.json(f"batteries/{serial}/telemetry"):
            readings = payload["readings"] if "readings" in payload else [payload]
            for reading in readings:
                parsed = Reading.model_validate(reading)
                assert parsed.temperature is not None and parsed.lat is not None
                assert 10 < parsed.lat < 15 and 75 < parsed.lon < 80  # around Bengaluru
    # A clean stop leaves a retained offline status (the will fires only on a drop).
    late = cloud_factory(mosquitto.port, topic=f"batteries/{prefix}00002/status")
    retained = late.wait(lambda: late.seen(f"batteries/{prefix}00002/status"))
    summaries = [r for r in caplog.records if r.getMessage().startswith("sim running")]
    assert summaries and max(r.connected for r in summaries) == 3
    assert max(r.readings_per_s for r in summaries) > 0
    assert retained[0][2] is True and json.loads(retained[0][1])["online"] is False


def test_command_acked_received_then_applied_and_obeyed(
    mosquitto: services.Mosquitto, cloud_factory, prefix
) -> None:
    serial = f"{prefix}00001"
    cloud = cloud_factory(mosquitto.port, topic=f"batteries/{serial}/#")
    options = SimOptions(count=1, prefix=prefix, interval=0.2, seed=1)
    with SimThread(sim_settings(mosquitto.url), options):
        cloud.wait(lambda: cloud.seen(f"batteries/{serial}/status"))
        command_id = cloud.command(serial, "disable", "discharging")
        cloud.wait(lambda: len(_acks(cloud, serial, command_id)) >= 2)
        acks = _acks(cloud, serial, command_id)
        assert [a["stage"] for a in acks] == ["received", "applied"]
        assert acks[1]["enabled"] is False and acks[0]["enabled"] is True
        statuses = cloud.wait(
            lambda: [s for s in cloud.json(f"batteries/{serial}/status") if s.get("enabled") is False]
        )
        assert statuses[-1] == {**statuses[-1], "online": True, "enabled": False, "spec": "discharging"}
        # Obeyed: from now on the pack gives no current (it may still take some, when charging).
        applied_at = len(cloud.seen(f"batteries/{serial}/telemetry"))
        cloud.wait(lambda: len(cloud.seen(f"batteries/{serial}/telemetry")) >= applied_at + 10)
        later = cloud.json(f"batteries/{serial}/telemetry")[applied_at + 3 :]  # skip any in flight
        assert all(r["current"] <= 0 for r in later if "current" in r)


def test_repeated_command_id_is_acked_again_but_not_applied_twice(
    mosquitto: services.Mosquitto, cloud_factory, prefix
) -> None:
    serial = f"{prefix}00001"
    cloud = cloud_factory(mosquitto.port, topic=f"batteries/{serial}/#")
    with SimThread(sim_settings(mosquitto.url), SimOptions(count=1, prefix=prefix, interval=1.0)):
        cloud.wait(lambda: cloud.seen(f"batteries/{serial}/status"))
        disable = cloud.command(serial, "disable", "both")
        cloud.wait(lambda: len(_acks(cloud, serial, disable)) == 2)
        enable = cloud.command(serial, "enable", "both")
        cloud.wait(lambda: len(_acks(cloud, serial, enable)) == 2)
        # online, then disabled, then enabled again: each command's status has arrived
        statuses_before = cloud.wait(lambda: len(cloud.seen(f"batteries/{serial}/status")) == 3 and 3)
        cloud.command(serial, "disable", "both", command_id=disable)  # the old one again
        cloud.wait(lambda: len(_acks(cloud, serial, disable)) == 3)
        cloud.command(serial, "enable", "both", command_id=enable)  # a marker: acks come in order
        cloud.wait(lambda: len(_acks(cloud, serial, enable)) == 3)
        repeat = _acks(cloud, serial, disable)[2]
        assert repeat["stage"] == "applied" and repeat["enabled"] is False  # the answer it gave then
        # ...but the battery stayed enabled: no new status, nothing switched off.
        assert len(cloud.seen(f"batteries/{serial}/status")) == statuses_before
    # The offline status is published as the simulator stops: wait for it rather than race it.
    final = cloud.wait(
        lambda: (last := cloud.json(f"batteries/{serial}/status")[-1])["online"] is False and last
    )
    assert final["enabled"] is True


def test_invalid_command_is_rejected_with_an_error(
    mosquitto: services.Mosquitto, cloud_factory, prefix
) -> None:
    serial = f"{prefix}00001"
    cloud = cloud_factory(mosquitto.port, topic=f"batteries/{serial}/#")
    with SimThread(sim_settings(mosquitto.url), SimOptions(count=1, prefix=prefix, interval=1.0)):
        cloud.wait(lambda: cloud.seen(f"batteries/{serial}/status"))
        bad = {"id": "11111111-2222-3333-4444-555555555555", "action": "explode", "issued_at": 0}
        cloud.client.publish(f"batteries/{serial}/cmd", json.dumps(bad), qos=1)
        expired = cloud.command(serial, "disable", expires_in=-10)
        cloud.wait(
            lambda: len(_acks(cloud, serial, bad["id"])) == 2 and len(_acks(cloud, serial, expired)) == 2
        )
        for command_id in (bad["id"], expired):
            received, rejected = _acks(cloud, serial, command_id)
            assert received["stage"] == "received" and rejected["stage"] == "rejected"
            assert rejected["error"] and rejected["enabled"] is True
        assert "action" in _acks(cloud, serial, bad["id"])[1]["error"]
        assert "expired" in _acks(cloud, serial, expired)[1]["error"]


def test_an_ack_says_the_state_of_the_switches_its_command_names(
    mosquitto: services.Mosquitto, cloud_factory, prefix
) -> None:
    # Control reads an ack's `enabled` against the command's spec (control/acks.py).
    serial = f"{prefix}00001"
    cloud = cloud_factory(mosquitto.port, topic=f"batteries/{serial}/#")
    with SimThread(sim_settings(mosquitto.url), SimOptions(count=1, prefix=prefix, interval=1.0)):
        cloud.wait(lambda: cloud.seen(f"batteries/{serial}/status"))
        cut = cloud.command(serial, "disable", "charging")
        cloud.wait(lambda: len(_acks(cloud, serial, cut)) == 2)
        # charging off, discharging on; commands that expired are refused with the state they found
        refused = {
            spec: cloud.command(serial, "disable", spec, expires_in=-10) for spec in ("discharging", "both")
        }
        cloud.wait(lambda: all(len(_acks(cloud, serial, c)) == 2 for c in refused.values()))
        assert _acks(cloud, serial, refused["discharging"])[1]["enabled"] is True
        assert "enabled" not in _acks(cloud, serial, refused["both"])[1]  # the two switches are apart


def test_faults_reject_drop_and_delay_acks(mosquitto: services.Mosquitto, cloud_factory, prefix) -> None:
    cloud = cloud_factory(mosquitto.port)
    rejecting = SimOptions(count=1, prefix=f"{prefix}R", interval=1.0, faults=Faults(reject=1.0))
    silent = SimOptions(count=1, prefix=f"{prefix}D", interval=1.0, faults=Faults(drop_ack=1.0))
    slow = SimOptions(
        count=1, prefix=f"{prefix}S", interval=1.0, faults=Faults(delay_ack=1.0, delay_ack_max_s=2)
    )
    settings = sim_settings(mosquitto.url)
    with SimThread(settings, rejecting), SimThread(settings, silent), SimThread(settings, slow):
        r, d, s = f"{prefix}R00001", f"{prefix}D00001", f"{prefix}S00001"
        cloud.wait(lambda: all(cloud.seen(f"batteries/{x}/status") for x in (r, d, s)))
        ids = {x: cloud.command(x, "disable") for x in (r, d, s)}
        cloud.wait(lambda: len(_acks(cloud, r, ids[r])) == 2 and len(_acks(cloud, s, ids[s])) == 2)
        assert _acks(cloud, r, ids[r])[1]["stage"] == "rejected"
        assert "simulated fault" in _acks(cloud, r, ids[r])[1]["error"]
        assert [a["stage"] for a in _acks(cloud, s, ids[s])] == ["received", "applied"]
        assert _acks(cloud, d, ids[d]) == []
        # the slow one answered late, not at once
        acked_at = [m[3] for m in cloud.seen(f"batteries/{s}/cmd/ack")][0]
        sent_at = [m[3] for m in cloud.seen(f"batteries/{s}/cmd")][0]
        assert acked_at - sent_at >= 0.4
