"""The MQTT side: a paho client with manual acknowledgement and a persistent session.

paho's network thread calls `_deliver` for each message, which parses it and puts it in the
buffer (blocking while the buffer is full). The writer calls `ack` after its batch has committed.

The session outlives the worker on purpose: what it had not acknowledged comes back when it
returns. Mosquitto (2.0) also keeps giving a stopped worker its round-robin share of a shared
subscription, queued in its session until it reconnects, so a worker removed for good must
have its session ended on the broker, or its share waits there until the session expires.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest import metrics
from ingest.batch import Buffer, Message, message_bytes, message_weight
from ingest.client import IngestClient
from ingest.parse import DeadLetter, ParsedReadings, StatusUpdate, parse
from packfleet.mqtt import paho_client, paho_connect_properties
from packfleet.settings import Settings
from schemas import topics

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
FILTERS = (topics.TELEMETRY_FILTER, topics.STATUS_FILTER)
_RECEIVE_MAXIMUM_CAP = 65535  # the largest value MQTT 5 can carry
_TELEMETRY = metrics.RECEIVED.labels("telemetry")
_STATUS = metrics.RECEIVED.labels("status")
_OTHER = metrics.RECEIVED.labels("invalid")  # refused by the parser


class Receiver:
    """Receives telemetry and status into a Buffer; acknowledges only what was committed."""

    def __init__(self, settings: Settings, buffer: Buffer, *, retire: bool = False) -> None:
        self._settings = settings
        self._buffer = buffer
        self._retire = retire  # take what the session holds, unsubscribe, end the session at stop
        self._max_age = timedelta(days=settings.ingest_max_reading_age_days)
        self.unsubscribed = threading.Event()
        self.last_received = time.monotonic()
        self._protocol = settings.mqtt_protocol
        client = paho_client(
            settings.mqtt,
            client_id=settings.ingest_client_id,
            protocol=self._protocol,
            persistent=True,
            manual_ack=True,
            client_class=IngestClient,
        )
        assert isinstance(client, IngestClient)
        self._client = client
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_unsubscribe = self._on_unsubscribe
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message  # what paho itself decodes (QoS 2: never here)
        self._client.deliver = self._deliver
        # Acks are valid only on the connection their message came on: after a reconnect the
        # broker redelivers what was not acknowledged, and a stale packet id must not ack
        # something else. The lock orders `ack` against the connection callbacks.
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._stopping = False

    @property
    def subscriptions(self) -> list[str]:
        if self._protocol == 5:
            return [topics.shared(self._settings.ingest_share_group, f) for f in FILTERS]
        return list(FILTERS)

    def start(self) -> None:
        target = self._settings.mqtt
        properties = paho_connect_properties(self._protocol, persistent=True)
        if properties is not None:
            # The broker may keep this many unacknowledged messages in flight to us: ack after
            # commit needs a whole batch of them (Mosquitto's own default is 20).
            properties.ReceiveMaximum = min(self._buffer.max_weight, _RECEIVE_MAXIMUM_CAP)
        self._client.connect_async(
            target.host,
            target.port,
            keepalive=KEEPALIVE_S,
            # paho's default for MQTT 5 starts clean the first time, which would throw away
            # what a killed worker left unacknowledged in its session.
            clean_start=False if self._protocol == 5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._client.loop_start()

    def stop(self, *, end_session: bool = False) -> None:
        """Disconnect; the session and its unacknowledged messages stay with the broker unless
        `end_session` (MQTT 5: session expiry 0 on DISCONNECT)."""
        self._stopping = True
        properties = None
        if end_session and self._protocol == 5:
            properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
            log.info("ending the MQTT session", extra={"client_id": self._settings.ingest_client_id})
        self._client.disconnect(properties=properties)
        self._client.loop_stop()
        with self._lock:
            self._connected = False
            metrics.CONNECTED.set(0)

    def ack(self, batch: list[Message]) -> int:
        """Acknowledge a committed batch's QoS 1 messages; return how many could not be."""
        acked = [m for m in batch if m.qos == 1]
        with self._lock:
            current = [m.mid for m in acked if m.generation == self._generation] if self._connected else []
            if current:
                self._client.ack_many(current)
        skipped = len(acked) - len(current)
        if skipped:
            metrics.ACKS_SKIPPED.inc(skipped)
        return skipped

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        _properties: Any,
    ) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused", extra={"reason": str(reason)})
            return
        with self._lock:
            self._generation += 1
            self._connected = True
        if self._retire:
            # The session's queued messages arrive anyway; new ones go to the rest of the group.
            client.unsubscribe(self.subscriptions)
            log.info(
                "retiring: unsubscribing, taking what the session holds", extra={"topics": self.subscriptions}
            )
            return
        # Subscribing again is harmless and covers a session that expired while we were away.
        if self._protocol == 5:
            subscription: list[tuple[str, Any]] = [(s, SubscribeOptions(qos=1)) for s in self.subscriptions]
            note = "shared subscription: workers in the group split the stream"
        else:
            subscription = [(s, 1) for s in self.subscriptions]
            note = "MQTT 3.1.1 has no shared subscriptions: plain subscription, run a single worker"
        client.subscribe(subscription)
        log.info(
            "MQTT connected, subscribing",
            extra={
                "topics": self.subscriptions,
                "client_id": self._settings.ingest_client_id,
                "protocol": self._protocol,
                "note": note,
            },
        )

    def _on_unsubscribe(self, *_args: Any) -> None:
        metrics.CONNECTED.set(1)
        self.unsubscribed.set()

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        log.warning("MQTT broker unreachable; retrying", extra={"mqtt": repr(self._settings.mqtt)})

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _properties: Any
    ) -> None:
        with self._lock:
            self._generation += 1
            self._connected = False
        metrics.CONNECTED.set(0)
        if self._stopping:
            log.info("MQTT disconnected")
        else:
            log.warning("MQTT connection lost; paho reconnects", extra={"reason": str(reason)})

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("MQTT subscription refused", extra={"topics": self.subscriptions, "reasons": failed})
        else:
            metrics.CONNECTED.set(1)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self._deliver(msg._topic, bytes(msg.payload), msg.mid, msg.qos, msg.retain)

    def _deliver(self, raw_topic: bytes, payload: bytes, mid: int, qos: int, retain: bool) -> None:
        """Called by paho's thread for each message: parse it and hand it to the buffer."""
        try:
            self._take(raw_topic, payload, mid, qos, retain)
        except Exception:  # paho's thread would die of it, silently ending all receiving
            log.exception("could not take a message; it stays unacknowledged and comes back")

    def _take(self, raw_topic: bytes, payload: bytes, mid: int, qos: int, retain: bool) -> None:
        received = time.time()
        self.last_received = time.monotonic()
        try:
            topic = raw_topic.decode("utf-8")
        except UnicodeDecodeError:
            topic = repr(raw_topic)  # the broker should not let one through, but never die of it
        parsed = parse(topic, payload, max_age=self._max_age)
        kind = type(parsed)
        (_TELEMETRY if kind is ParsedReadings else _STATUS if kind is StatusUpdate else _OTHER).inc()
        # A refused message is held only as its dead letter (which keeps what is stored of it).
        kept = b"" if kind is DeadLetter else payload
        message = Message(
            topic,
            kept,
            parsed,
            mid,
            qos,
            retain,
            received,
            self._generation,
            message_weight(parsed),
            message_bytes(parsed, kept),
        )
        # Not taken (shutting down): never acknowledged, so the broker redelivers it.
        self._buffer.put(message)
