"""The control process: publish commands, track acks, retry, expire; all state in the database.

Several control processes may run at once: they claim work with `FOR UPDATE SKIP LOCKED` and, on
MQTT 5, split the device messages through the shared subscription `$share/control/...`. On MQTT
3.1.1 (the embedded amqtt broker) each subscribes plainly and sees every ack, which is redundant
but safe: every state change is conditional on the stored state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, cast

import aiomqtt
import psycopg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from control import metrics, queries
from control.dispatcher import BATCH, Dispatcher
from control.inbound import InboundWorker
from control.queries import Pool
from packfleet.db import open_pool
from packfleet.metrics import serve_metrics
from packfleet.settings import Settings
from schemas import topics

log = logging.getLogger(__name__)

# One MQTT session per host (a container's hostname survives its restarts); a second control
# process on the same host needs its own id (PACKFLEET_CONTROL_CLIENT_ID).
DEFAULT_CLIENT_ID = f"packfleet-control-{socket.gethostname()}"[:64]
SHARE_GROUP = "control"
SESSION_EXPIRY_S = 30
EXPIRY_SWEEP_S = 1.0
METRICS_REFRESH_S = 15.0


def retry_sweep_seconds(settings: Settings) -> float:
    """How often due retries are looked for: often enough for the shortest backoff, at most 1 s apart."""
    return min(1.0, max(0.05, settings.command_retry_base_seconds / 2))


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    client_id: str | None = None,
    on_connected: Callable[[], None] | None = None,
) -> None:
    """Run the control service until `stop` is set; `on_connected` is called once subscribed."""
    serve_metrics(settings.metrics_port, settings.metrics_host)
    url = settings.require_database_url()
    client_id = client_id or settings.control_client_id or DEFAULT_CLIENT_ID
    async with open_pool(url, name="control", min_size=2, max_size=6) as untyped_pool:
        pool = cast(Pool, untyped_pool)  # open_pool's connections return dict rows
        # The worker wakes the dispatcher when a command ends; the dispatcher asks how far behind it is.
        inbound = InboundWorker(pool, wake_dispatcher=lambda: dispatcher.wake.set())
        dispatcher = Dispatcher(
            pool,
            protocol=settings.mqtt_protocol,
            retry_base_s=settings.command_retry_base_seconds,
            retry_max_s=settings.command_retry_max_seconds,
            actor=f"control:{client_id}",
            unread_acks=inbound.queue.qsize,
        )
        worker_stop = asyncio.Event()
        worker = asyncio.create_task(inbound.run(worker_stop), name="control-inbound")
        helpers = [
            asyncio.create_task(dispatcher.loop(stop), name="control-dispatch"),
            asyncio.create_task(_listen(url, dispatcher.wake.set), name="control-listen"),
        ]
        scheduler = _scheduler(settings, pool, dispatcher)
        scheduler.start()
        log.info("control started", extra={"client_id": client_id})
        try:
            await _mqtt(settings, client_id, dispatcher, inbound, stop, on_connected)
        finally:
            scheduler.shutdown(wait=False)
            for task in helpers:
                task.cancel()
            worker_stop.set()
            # Record the acks already received before the pool closes.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker, timeout=10)
            worker.cancel()
            await asyncio.gather(*helpers, worker, return_exceptions=True)
            log.info("control stopped")


def _scheduler(settings: Settings, pool: Pool, dispatcher: Dispatcher) -> AsyncIOScheduler:
    """The periodic jobs of the control process; later issues add theirs here (ids `control.*`)."""
    scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
    common = {"replace_existing": True, "coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
    every = retry_sweep_seconds(settings)
    scheduler.add_job(_guard(dispatcher.sweep), "interval", seconds=every, id="control.retry_sweep", **common)
    scheduler.add_job(
        _guard(expire_sweep, pool, dispatcher),
        "interval",
        seconds=EXPIRY_SWEEP_S,
        id="control.expiry_sweep",
        **common,
    )
    scheduler.add_job(
        _guard(refresh_metrics, pool), "interval", seconds=METRICS_REFRESH_S, id="control.metrics", **common
    )
    return scheduler


def _guard(job: Callable[..., Awaitable[object]], *args: object) -> Callable[[], Awaitable[None]]:
    """A job that logs its failure instead of raising into the scheduler."""

    async def guarded() -> None:
        try:
            await job(*args)
        except Exception:
            log.exception("job %s failed", getattr(job, "__name__", job))

    return guarded


async def expire_sweep(pool: Pool, dispatcher: Dispatcher | None = None) -> int:
    """Expire every open command past its `expires_at`; return how many."""
    actor = dispatcher.actor if dispatcher is not None else "control"
    total = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            rows = await queries.expire_due(conn, limit=BATCH)
            await queries.insert_events(
                conn,
                [
                    (r["id"], "expired", r["finished_at"], actor, f"not applied by {r['expires_at']}")
                    for r in rows
                ],
            )
        if rows:
            metrics.TRANSITIONS.labels("expired").inc(len(rows))
            log.info("expired %d commands", len(rows))
        total += len(rows)
        if len(rows) < BATCH:
            break
    if total and dispatcher is not None:
        dispatcher.wake.set()  # the next command of those batteries is now their head
    return total


async def refresh_metrics(pool: Pool) -> None:
    async with pool.connection() as conn:
        for status, n in (await queries.open_counts(conn)).items():
            metrics.OPEN_COMMANDS.labels(status).set(n)


async def _listen(url: str, wake: Callable[[], None]) -> None:
    """Wake the dispatcher on every NOTIFY from `issue_command`; reconnect when the database drops us."""
    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f"LISTEN {queries.NOTIFY_CHANNEL}")
                wake()  # whatever was issued while nobody listened
                delay = 0.5
                async for _ in conn.notifies():
                    wake()
        except psycopg.OperationalError as exc:
            log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def _filters(protocol: int) -> list[str]:
    wanted = [topics.COMMAND_ACK_FILTER, topics.STATUS_FILTER]
    if protocol == 5:
        return [topics.shared(SHARE_GROUP, f) for f in wanted]
    return wanted


async def _mqtt(
    settings: Settings,
    client_id: str,
    dispatcher: Dispatcher,
    inbound: InboundWorker,
    stop: asyncio.Event,
    on_connected: Callable[[], None] | None,
) -> None:
    """Stay connected to the broker (reconnecting with backoff) until `stop`."""
    delay = 1.0
    filters = _filters(settings.mqtt_protocol)
    if settings.mqtt_protocol != 5:
        log.info("MQTT 3.1.1: plain subscriptions (no $share); every control process sees every ack")
    while not stop.is_set():
        client = _client(settings, client_id)
        try:
            async with client:
                for topic_filter in filters:
                    await client.subscribe(topic_filter, qos=1)
                log.info("connected to the broker", extra={"broker": repr(settings.mqtt), "filters": filters})
                delay = 1.0
                dispatcher.attach(client)
                if on_connected is not None:
                    on_connected()
                reader = asyncio.create_task(_read(client, inbound))
                stopper = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                await dispatcher.detach()  # let an in-progress batch finish with this client
                if stopper in done:
                    # A session that lingers with a shared subscription would still be dealt acks.
                    with contextlib.suppress(aiomqtt.MqttError):
                        await client.unsubscribe(filters, timeout=5)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                if reader in done:
                    reader.result()
        except aiomqtt.MqttError as exc:
            await dispatcher.detach()
            log.warning("broker connection lost (%s); reconnecting in %.0fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 30.0)


def _client(settings: Settings, client_id: str) -> aiomqtt.Client:
    """A client whose session outlives a crash briefly: a restart under the same id gets the queued acks.

    Not longer: Mosquitto keeps dealing shared-subscription messages to a disconnected member's
    session, so a process that never comes back would swallow its share of acks until it expires
    (the commands would still finish, by re-sending, but late).
    """
    target = settings.mqtt
    kwargs: dict[str, Any] = {}
    if settings.mqtt_protocol == 5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        kwargs = {"properties": properties, "clean_start": False, "protocol": aiomqtt.ProtocolVersion.V5}
    else:
        kwargs = {"clean_session": True, "protocol": aiomqtt.ProtocolVersion.V311}
    client = aiomqtt.Client(
        target.host,
        target.port,
        identifier=client_id,
        username=target.username,
        password=target.password,
        # paho allows 20 unconfirmed QoS 1 publishes by default; a fan-out publishes a batch at once.
        max_inflight_messages=BATCH,
        # Without it Nagle holds a command behind our last PUBACK until the broker's delayed ACK.
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        **kwargs,
    )
    client.pending_calls_threshold = BATCH + 1  # a full batch in flight is normal, not a warning
    return client


async def _read(client: aiomqtt.Client, inbound: InboundWorker) -> None:
    async for message in client.messages:
        payload = message.payload
        data = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
        inbound.put(str(message.topic), data, retained=bool(message.retain))
