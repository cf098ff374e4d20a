"""The production mosquitto.conf and acl.conf: no anonymous access, each device on its own topics."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests import services


def _client(
    broker: services.Mosquitto, username: str | None, password: str | None
) -> tuple[mqtt.Client, list]:
    received: list[mqtt.MQTTMessage] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    client.on_message = lambda _c, _u, msg: received.append(msg)
    return client, received


def _connect(client: mqtt.Client, port: int) -> int:
    codes: list[int] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.02)
    return codes[0] if codes else -1


@pytest.fixture
def secured_broker(tmp_path: Path):
    if services.mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("needs mosquitto and mosquitto_passwd: `apt-get install mosquitto`")
    passwd = tmp_path / "passwd"
    for user in ("ingest", "control", "BAT1", "BAT2"):
        flag = ["-c"] if not passwd.exists() else []
        subprocess.run(["mosquitto_passwd", *flag, "-b", str(passwd), user, f"{user}-pw"], check=True)
    broker = services.Mosquitto(
        tmp_path / "broker", anonymous=False, passwd=passwd, acl=services.REPO / "acl.conf"
    ).start()
    yield broker
    broker.stop()


def test_anonymous_and_wrong_password_are_refused(secured_broker: services.Mosquitto) -> None:
    anon, _ = _client(secured_broker, None, None)
    wrong, _ = _client(secured_broker, "BAT1", "nope")
    try:
        assert _connect(anon, secured_broker.port) != 0
        assert _connect(wrong, secured_broker.port) != 0
    finally:
        anon.loop_stop()
        wrong.loop_stop()


def test_device_publishes_only_under_its_own_serial(secured_broker: services.Mosquitto) -> None:
    ingest, received = _client(secured_broker, "ingest", "ingest-pw")
    device, device_inbox = _client(secured_broker, "BAT1", "BAT1-pw")
    try:
        assert _connect(ingest, secured_broker.port) == 0
        assert _connect(device, secured_broker.port) == 0
        ingest.subscribe("batteries/+/telemetry", qos=1)
        device.subscribe("batteries/BAT2/cmd", qos=1)  # another battery's commands: denied
        device.subscribe("batteries/BAT1/cmd", qos=1)
        time.sleep(0.3)
        device.publish("batteries/BAT2/telemetry", b'{"spoofed": true}', qos=1).wait_for_publish(5)
        device.publish("batteries/BAT1/telemetry", b'{"own": true}', qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 3
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert [m.topic for m in received] == ["batteries/BAT1/telemetry"]
        assert device_inbox == []
    finally:
        ingest.loop_stop()
        device.loop_stop()


def _persistent(port: int, client_id: str, topic: str | None) -> tuple[mqtt.Client, list]:
    client, received = _client_with_id(client_id)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    if topic:
        client.subscribe(topic, qos=1)
    time.sleep(0.3)
    return client, received


def _client_with_id(client_id: str) -> tuple[mqtt.Client, list]:
    received: list[mqtt.MQTTMessage] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, msg: received.append(msg)
    return client, received


@pytest.mark.xfail(
    services.loses_shared_subscriptions_on_restart(),
    strict=True,
    reason="Mosquitto 2.0 (Debian 12 has 2.0.11) has only the built-in persistence, which restores a "
    "persistent session's plain subscriptions after a restart but not its shared ones: telemetry "
    "published before ingest re-subscribes is lost (found by the chaos run's broker restart). "
    "2.1+ with mosquitto.conf's persist-sqlite plugin keeps them, and there this test must pass",
)
def test_a_persistent_sessions_shared_subscription_survives_a_broker_restart(own_mosquitto) -> None:
    for client_id, topic in (("shared-sub", "$share/g/survive/#"), ("plain-sub", "survive/#")):
        client, _ = _persistent(own_mosquitto.port, client_id, topic)
        client.disconnect()
        client.loop_stop()
    own_mosquitto.restart()  # SIGTERM: sessions and subscriptions saved, then loaded again
    publisher, _ = _client_with_id("publisher")
    publisher.connect("127.0.0.1", own_mosquitto.port)
    publisher.loop_start()
    publisher.publish("survive/x", b"published before the subscribers are back", qos=1).wait_for_publish(5)
    received = {}
    for client_id in ("plain-sub", "shared-sub"):
        client, inbox = _persistent(own_mosquitto.port, client_id, None)
        time.sleep(0.5)
        received[client_id] = [m.payload for m in inbox]
        client.loop_stop()
    publisher.loop_stop()
    assert received["plain-sub"], "the plain subscription is the control: it must survive"
    assert received["shared-sub"], "the shared subscription's message was dropped"


# What a device's credentials (BAT1) or a service's must not reach: (user, action, topic).
FORBIDDEN = [
    ("BAT1", "publish", "batteries/BAT2/telemetry"),
    ("BAT1", "publish", "batteries/BAT2/status"),
    ("BAT1", "publish", "batteries/BAT2/cmd/ack"),
    ("BAT1", "publish", "batteries/BAT2/cmd"),
    ("BAT1", "publish", "batteries/BAT1/cmd"),  # not even its own: commands come from control only
    ("BAT1", "subscribe", "batteries/BAT2/cmd"),
    ("BAT1", "subscribe", "batteries/+/cmd"),
    ("BAT1", "subscribe", "#"),
    ("BAT1", "subscribe", "batteries/#"),
    ("BAT1", "subscribe", "$share/steal/batteries/+/telemetry"),  # joining ingest's stream
    ("BAT1", "subscribe", "batteries/BAT2/telemetry"),
    ("ingest", "publish", "batteries/BAT2/cmd"),  # a service stays in its lane too
    ("control", "publish", "batteries/BAT2/telemetry"),
]


def test_the_acl_keeps_credentials_to_their_own_topics(secured_broker: services.Mosquitto) -> None:
    """A forbidden publish reaches no subscriber; a forbidden subscription receives nothing."""
    port = secured_broker.port
    watcher, seen = _client(secured_broker, "BAT2", "BAT2-pw")  # BAT2 reads its own commands
    spy, spied = _client(secured_broker, "ingest", "ingest-pw")  # ingest reads telemetry and status
    control, _ = _client(secured_broker, "control", "control-pw")
    actors = {user: _client(secured_broker, user, f"{user}-pw") for user in {u for u, _, _ in FORBIDDEN}}
    clients = [watcher, spy, control, *(c for c, _ in actors.values())]
    try:
        assert all(_connect(client, port) == 0 for client in clients)
        watcher.subscribe("batteries/BAT2/cmd", qos=1)
        spy.subscribe([("batteries/+/telemetry", 1), ("batteries/+/status", 1)])
        time.sleep(0.3)
        for n, (user, action, topic) in enumerate(FORBIDDEN):
            actor = actors[user][0]
            if action == "publish":
                actor.publish(topic, f'{{"forged": {n}}}'.encode(), qos=1).wait_for_publish(5)
            else:
                actor.subscribe(topic, qos=1)
        time.sleep(0.3)
        # Traffic the forbidden subscriptions would match: BAT2's telemetry and a command to BAT2.
        watcher.publish("batteries/BAT2/telemetry", b'{"secret": 1}', qos=1).wait_for_publish(5)
        control.publish("batteries/BAT2/cmd", b'{"secret": 2}', qos=1).wait_for_publish(5)
        time.sleep(0.5)
        forged = [(m.topic, m.payload) for m in seen + spied if b"forged" in m.payload]
        assert forged == [], "forbidden publishes were delivered"
        read = {user: [m.topic for m in inbox] for user, (_, inbox) in actors.items()}
        assert read == {user: [] for user in actors}, "forbidden subscriptions received messages"
        assert [m.topic for m in seen] == ["batteries/BAT2/cmd"], "the allowed paths still work"
    finally:
        for client in clients:
            client.loop_stop()
