"""One simulated battery's side of the MQTT device contract: its own client, will, status,
telemetry with store-and-forward, and command handling with acks."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from pydantic import ValidationError

from device_sim.connection import Connection
from device_sim.faults import Dice, Faults
from device_sim.model import FleetModel
from device_sim.transport import Driver
from schemas import topics
from schemas.device import MAX_BATCH_READINGS, Command

if TYPE_CHECKING:
    from device_sim.multiplex import SharedConnection

log = logging.getLogger(__name__)

FIRMWARE = "1.4.2"
MAX_BUFFERED = 50_000  # readings a device keeps while offline (about 6 days at one per 10 s)
BATCH_BYTES = 200_000  # under the contract's 256 KiB, with room to spare
REMEMBERED_COMMANDS = 256
WILL = b'{"online": false}'
REJECTED_BY_FAULT = "simulated fault: the BMS refused the command"
# Connections waiting for a CONNACK at once, first start and reconnect storms alike: more only
# overflows the broker's listen backlog, and dropped SYNs come back a second later.
CONNECTS_IN_FLIGHT = 200


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2026-11-27T06:34:03.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


@dataclass
class Stats:
    """Counters for the whole simulated fleet, read by the summary line and the metrics."""

    connected: int = 0
    readings_published: int = 0
    readings_buffered: int = 0
    readings_dropped: int = 0
    batches_published: int = 0
    commands_received: int = 0
    commands_applied: int = 0
    commands_rejected: int = 0
    commands_repeated: int = 0
    commands_unreadable: int = 0
    acks_sent: int = 0
    acks_dropped: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    flaps: int = 0
    malformed_sent: int = 0
    duplicates_sent: int = 0
    backlog_bursts: int = 0


@dataclass
class Link:
    """How devices reach the broker: shared by every device of a simulation."""

    driver: Driver
    host: str
    port: int
    protocol: int
    username: str | None = None
    password: str | None = None
    # Set: each device logs in as its serial with this password ("{serial}" in it is replaced).
    device_password: str | None = None
    stats: Stats = field(default_factory=Stats)
    stopping: bool = False
    all_offline: asyncio.Event = field(default_factory=asyncio.Event)  # set when stopping empties it
    connect_gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONNECTS_IN_FLIGHT))


class Device(Connection):
    """A battery: model state lives in the fleet arrays at `index`; this holds its MQTT life."""

    refused = "broker refused the device"
    log = log

    def __init__(
        self, *, serial: str, index: int, model: FleetModel, link: Link, faults: Faults, seed: int
    ) -> None:
        self.serial = serial
        self.index = index
        self.model = model
        self.dice = Dice(faults, seed)
        super().__init__(link=link, rng=self.dice.rng)
        self.faults = faults
        self.fw = FIRMWARE
        self.skew_s = self.dice.clock_skew()
        self.connected = False
        self.backlog: deque[dict[str, Any]] = deque()
        self.holding = 0  # readings still to hold back in a backlog burst
        self._inflight: dict[int, list[dict[str, Any]]] = {}  # mid -> readings not yet PUBACKed
        self._commands: OrderedDict[str, dict[str, Any] | None] = OrderedDict()  # id -> final ack
        self.readings_acked = 0  # distinct readings the broker acknowledged (the counts export)
        self.shared: SharedConnection | None = None  # set in multiplexed mode
        self._topic_telemetry = topics.telemetry(serial)
        self._topic_status = topics.status(serial)
        self._topic_ack = topics.command_ack(serial)
        self._topic_cmd = topics.command(serial)

    # Connection.

    def _log_extra(self) -> dict[str, Any]:
        return {"serial": self.serial}

    def _new_client(self) -> paho.Client:
        link = self.link
        user: str | None
        password: str | None
        if link.device_password is not None:
            user, password = self.serial, link.device_password.replace("{serial}", self.serial)
        else:
            user, password = link.username, link.password
        client = link.driver.new_client(
            client_id=self.serial, protocol=link.protocol, username=user, password=password
        )
        client.will_set(self._topic_status, WILL, qos=1, retain=True)
        return client

    def _up(self, client: paho.Client) -> None:
        client.subscribe(self._topic_cmd, qos=1)
        self.attach(client)

    def attach(self, client: paho.Client) -> None:
        """The link is up (this device's own, or a shared one): announce, then upload the backlog."""
        self.client = client
        self.connected = True
        stats = self.link.stats
        stats.connected += 1
        stats.connects += 1
        self.publish_status()
        self._flush_backlog()

    def detach(self) -> None:
        """The link is down: readings the broker never acknowledged go back to the buffer, in order."""
        if self.connected:
            self.connected = False
            self.link.stats.connected -= 1
            self.link.stats.disconnects += 1
            if self.link.stopping and self.link.stats.connected == 0:
                self.link.all_offline.set()
        for mid in sorted(self._inflight, reverse=True):
            self.backlog.extendleft(reversed(self._inflight[mid]))
        self._inflight.clear()

    def _down(self) -> None:
        self.detach()

    def flap(self) -> None:
        """Drop the TCP connection without a DISCONNECT, as a device losing its network does."""
        if not self.connected or self.client is None:
            return
        if self.shared is not None:
            self.shared.flap()  # multiplexed: the whole shared connection drops
            return
        self.link.stats.flaps += 1
        self._offline_until = time.time() + self.dice.offline_for()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)  # paho reads EOF next and reports the disconnect

    def go_offline(self) -> paho.MQTTMessageInfo | None:
        """A clean shutdown: say so in the retained status (the will only fires on a drop)."""
        self._cancel_reconnect()
        if not self.connected or self.client is None:
            return None
        info = self.publish_status(online=False)
        if self.shared is None:  # a shared connection is closed by its owner, after everyone
            self.client.disconnect()
        return info

    # Telemetry.

    def now(self) -> float:
        return time.time() + self.skew_s

    def record(
        self, values: tuple[float, float, float, float, float, float], *, at: float | None = None
    ) -> None:
        """Take one reading: publish it, or keep it while offline or holding back a burst."""
        voltage, current, soc, temperature, lat, lon = values
        reading = {
            "ts": iso((time.time() if at is None else at) + self.skew_s),
            "voltage": voltage,
            "current": current,
            "soc": soc,
            "temperature": temperature,
            "lat": lat,
            "lon": lon,
        }
        dice, faults = self.dice, self.faults
        if self.holding == 0 and dice.roll(faults.backlog):
            self.holding = faults.backlog_readings
            self.link.stats.backlog_bursts += 1
        if self.holding > 0 or not self.connected:
            self._buffer(reading)
            if self.holding > 0:
                self.holding -= 1
                if self.holding == 0 and self.connected:
                    self._flush_backlog()
            return
        self._publish_readings([reading], json.dumps(reading).encode())
        if dice.roll(faults.duplicate):
            self._publish_readings([], json.dumps(reading).encode())
            self.link.stats.duplicates_sent += 1
        if dice.roll(faults.malformed):
            self._publish_malformed(reading)
        if dice.roll(faults.flap):
            self.flap()

    def _buffer(self, reading: dict[str, Any]) -> None:
        if len(self.backlog) >= MAX_BUFFERED:
            self.backlog.popleft()
            self.link.stats.readings_dropped += 1
        self.backlog.append(reading)
        self.link.stats.readings_buffered += 1

    def _publish_readings(self, readings: list[dict[str, Any]], payload: bytes) -> None:
        assert self.client is not None
        info = self.client.publish(self._topic_telemetry, payload, qos=1)
        if readings:
            self._inflight[info.mid] = readings
            if self.shared is not None:
                self.shared.mids[info.mid] = self
            self.link.stats.readings_published += len(readings)

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, _reason: Any, _props: Any) -> None:
        self.published(mid)

    def published(self, mid: int) -> None:
        """The broker acknowledged message `mid`: its readings are safe."""
        readings = self._inflight.pop(mid, None)
        if readings:
            self.readings_acked += len(readings)

    @property
    def readings_pending(self) -> int:
        """Readings taken but not yet acknowledged by the broker (buffered or in flight)."""
        return len(self.backlog) + sum(len(r) for r in self._inflight.values())

    def commands_seen(self) -> dict[str, str | None]:
        """The remembered commands by id: their final stage, or None while being applied."""
        return {cid: (ack or {}).get("stage") for cid, ack in self._commands.items()}

    def _flush_backlog(self) -> None:
        """Upload what was kept while offline as {"readings": [...]} batches of at most 1000."""
        while self.backlog and self.connected and self.holding == 0:
            batch: list[dict[str, Any]] = []
            size = 20
            while self.backlog and len(batch) < MAX_BATCH_READINGS:
                reading = self.backlog[0]
                cost = len(json.dumps(reading)) + 1 if not batch else 160
                if size + cost > BATCH_BYTES:
                    break
                batch.append(self.backlog.popleft())
                size += cost
            self._publish_readings(batch, json.dumps({"readings": batch}).encode())
            self.link.stats.batches_published += 1

    def _publish_malformed(self, reading: dict[str, Any]) -> None:
        assert self.client is not None
        kind = self.dice.rng.randrange(4)
        if kind == 0:
            payload = json.dumps(reading).encode()[: self.dice.rng.randrange(5, 40)]  # cut off mid-message
        elif kind == 1:
            payload = json.dumps({k: v for k, v in reading.items() if k != "soc"}).encode()
        elif kind == 2:
            payload = json.dumps({**reading, "voltage": 5000.0}).encode()  # out of range
        else:
            payload = b"\xff\xfe\x00garbage from a brown-out"
        self.client.publish(self._topic_telemetry, payload, qos=1)
        self.link.stats.malformed_sent += 1

    # Status and commands.

    def state(self) -> tuple[bool, str]:
        """(enabled, spec) as the status message says it: `spec` names what `enabled` covers."""
        charge = bool(self.model.charge_enabled[self.index])
        discharge = bool(self.model.discharge_enabled[self.index])
        if charge and discharge:
            return True, "both"
        if not charge and not discharge:
            return False, "both"
        return False, "charging" if not charge else "discharging"

    def enabled_for(self, spec: str) -> bool | None:
        """An ack's `enabled` for a command of `spec`: the cloud reads it as the state of the switches
        the command names, so it is theirs; none when a `both` finds the two switches apart."""
        charge = bool(self.model.charge_enabled[self.index])
        discharge = bool(self.model.discharge_enabled[self.index])
        if spec == "charging":
            return charge
        if spec == "discharging":
            return discharge
        return charge if charge == discharge else None

    def publish_status(self, *, online: bool = True) -> paho.MQTTMessageInfo | None:
        if self.client is None:
            return None
        enabled, spec = self.state()
        status = {"online": online, "enabled": enabled, "spec": spec, "fw": self.fw, "ts": iso(self.now())}
        return self.client.publish(self._topic_status, json.dumps(status).encode(), qos=1, retain=True)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self._topic_cmd:
            self.on_command(message.payload)

    def on_command(self, payload: bytes | bytearray) -> None:
        stats = self.link.stats
        stats.commands_received += 1
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            data = None
        command_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(command_id, str) or not command_id:
            stats.commands_unreadable += 1  # nothing to acknowledge it by
            log.warning(
                "unreadable command",
                extra={"serial": self.serial, "payload": bytes(payload[:200]).decode(errors="replace")},
            )
            return
        if command_id in self._commands:
            # A repeat (control re-sends until it hears back): acknowledge again, never re-apply.
            stats.commands_repeated += 1
            final = self._commands[command_id]
            if final is None:
                self._ack(command_id, "received")
            else:
                self._send_ack({**final, "ts": iso(self.now())})
            return
        self._remember(command_id, None)
        try:
            command = Command.model_validate(data)
        except ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'command'}: {e['msg']}" for e in exc.errors()
            )
            spec = data.get("spec") if data.get("spec") in ("charging", "discharging") else "both"
            self._ack(command_id, "received", spec)
            self._finish(command_id, "rejected", spec, error=f"invalid command: {reason}"[:1000])
            return
        delay = self.dice.ack_delay()
        loop = self.link.driver.loop
        if delay:
            loop.call_later(delay, self._execute, command)
        else:
            self._execute(command)

    def _execute(self, command: Command) -> None:
        command_id = str(command.id)
        self._ack(command_id, "received", command.spec)
        if command.expires_at.timestamp() < time.time():
            self._finish(command_id, "rejected", command.spec, error="command expired before it was applied")
        elif self.dice.roll(self.faults.reject):
            self._finish(command_id, "rejected", command.spec, error=REJECTED_BY_FAULT)
        else:
            on = command.action == "enable"
            charging = on if command.spec in ("charging", "both") else None
            discharging = on if command.spec in ("discharging", "both") else None
            self.model.set_enabled(self.index, charging=charging, discharging=discharging)
            self._finish(command_id, "applied", command.spec)
            self.publish_status()

    def _finish(self, command_id: str, stage: str, spec: str, *, error: str | None = None) -> None:
        ack: dict[str, Any] = {"id": command_id, "stage": stage}
        enabled = self.enabled_for(spec)
        if enabled is not None:
            ack["enabled"] = enabled
        if error:
            ack["error"] = error
        self._remember(command_id, ack)
        stats = self.link.stats
        if stage == "applied":
            stats.commands_applied += 1
        else:
            stats.commands_rejected += 1
        self._send_ack({**ack, "ts": iso(self.now())})

    def _ack(self, command_id: str, stage: str, spec: str | None = None) -> None:
        ack: dict[str, Any] = {"id": command_id, "stage": stage, "ts": iso(self.now())}
        enabled = None if spec is None else self.enabled_for(spec)
        if enabled is not None:
            ack["enabled"] = enabled
        self._send_ack(ack)

    def _send_ack(self, ack: dict[str, Any]) -> None:
        stats = self.link.stats
        if self.dice.roll(self.faults.drop_ack):
            stats.acks_dropped += 1
            return
        if self.client is None or not self.connected:
            stats.acks_dropped += 1  # lost with the link; control re-sends and we re-ack
            return
        self.client.publish(self._topic_ack, json.dumps(ack).encode(), qos=1)
        stats.acks_sent += 1

    def _remember(self, command_id: str, ack: dict[str, Any] | None) -> None:
        self._commands[command_id] = ack
        self._commands.move_to_end(command_id)
        while len(self._commands) > REMEMBERED_COMMANDS:
            self._commands.popitem(last=False)
