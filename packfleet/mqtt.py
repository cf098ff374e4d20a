"""MQTT connections to the broker named by PACKFLEET_MQTT_URL: paho for ingest, aiomqtt elsewhere."""

from __future__ import annotations

from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from packfleet.settings import MqttTarget

SESSION_EXPIRY_S = 7 * 24 * 3600  # a persistent session outlives a restart or a long outage


def paho_client(
    target: MqttTarget,
    *,
    client_id: str,
    protocol: int,
    persistent: bool = True,
    manual_ack: bool = False,
    client_class: type[paho.Client] = paho.Client,
) -> paho.Client:
    """A paho client (not yet connected) speaking MQTT 5 or 3.1.1."""
    version = paho.MQTTv5 if protocol == 5 else paho.MQTTv311
    client = client_class(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=version,
        clean_session=None if version == paho.MQTTv5 else not persistent,
        manual_ack=manual_ack,
    )
    if target.username:
        client.username_pw_set(target.username, target.password)
    return client


def paho_connect_properties(protocol: int, *, persistent: bool = True) -> Properties | None:
    """CONNECT properties for MQTT 5: a session that survives disconnects when persistent."""
    if protocol != 5:
        return None
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S if persistent else 0
    return props


def aiomqtt_client(
    target: MqttTarget,
    *,
    client_id: str,
    protocol: int,
    persistent: bool = False,
    will: aiomqtt.Will | None = None,
    max_queued_incoming: int = 0,
) -> aiomqtt.Client:
    """An aiomqtt client (enter it with `async with`) speaking MQTT 5 or 3.1.1."""
    version = aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311
    kwargs: dict[str, Any] = {}
    if protocol == 5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S if persistent else 0
        kwargs["properties"] = props
        kwargs["clean_start"] = not persistent
    else:
        kwargs["clean_session"] = not persistent
    return aiomqtt.Client(
        target.host,
        target.port,
        identifier=client_id,
        username=target.username,
        password=target.password,
        protocol=version,
        will=will,
        max_queued_incoming_messages=max_queued_incoming or None,
        **kwargs,
    )
