"""`packfleet up`: the whole stack in one process for a newcomer, with embedded defaults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from datetime import timedelta

import uvicorn
from pydantic import SecretStr

from api.app import create_app
from api.nbfc.lenders import ensure_lender, link_user
from control.main import run as run_control
from device_sim.main import SimOptions
from device_sim.main import run as run_sim
from ingest.main import run as run_ingest
from nbfc_sim.lender import LenderOptions
from nbfc_sim.main import bind as lender_socket
from nbfc_sim.main import run as run_lender
from packfleet.accounts import token_for_phone
from packfleet.db import connect
from packfleet.demo import ADMIN_PHONE, DEALER_PHONE, NBFC_PHONE, seed_demo
from packfleet.embedded import EmbeddedBroker, EmbeddedPostgres, port_or_free
from packfleet.local import jwt_secret_file, remove_state, write_state
from packfleet.logs import on_terminal, setup_logging
from packfleet.migrate import migrate
from packfleet.scheduler import run as run_scheduler
from packfleet.settings import Settings

log = logging.getLogger(__name__)

DEMO_BATTERIES = 24


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to `up`, which stops every service in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


LOG_FILE = "packfleet.log"


def _summary(
    *,
    api: str,
    token: str,
    settings: Settings,
    database_url: str,
    running: list[str],
    seconds: float,
    first_serial: str,
) -> str:
    """What a newcomer needs on one screen, and shell-ready lines for scripts."""
    data_dir = settings.data_dir
    shown = "warnings and errors show here; " if on_terminal() and settings.log_json is not True else ""
    return f"""
packfleet is up in {seconds:.1f}s.

  Dashboard  {api}/dashboard/#token={token}
             (opens logged in as the demo admin; or log in at {api}/dashboard/ by phone and code)
  Log in     admin {ADMIN_PHONE}, dealer {DEALER_PHONE}: the code shows here as "SMS to ..."
  API docs   {api}/api-docs
  Running    {", ".join(running)}
  Data       {data_dir} ({shown}every log line is in {data_dir / LOG_FILE})
  2nd shell  packfleet token --phone {ADMIN_PHONE}   (finds this stack by itself)
  Try        curl -H "Authorization: Bearer $PACKFLEET_TOKEN" {api}/api/telemetry/{first_serial}?interval=1m

PACKFLEET_API={api}
PACKFLEET_MQTT_URL={settings.mqtt_url}
PACKFLEET_DATABASE_URL={database_url}
PACKFLEET_TOKEN={token}

Ctrl-C stops everything.
"""


async def up(settings: Settings, *, simulate: int = DEMO_BATTERIES, interval: float = 5.0) -> None:
    started = time.monotonic()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    embedded_db = settings.database_url is None
    embedded_mqtt = settings.mqtt_url is None
    overrides: dict[str, object] = {"data_dir": data_dir}
    if settings.jwt_secret is None:
        overrides["jwt_secret"] = SecretStr(jwt_secret_file(data_dir, create=True) or "")
    # Everything to a log file; a terminal shows warnings, errors and SMS lines (initdb's output,
    # migrations and service start-ups stay in the file).
    setup_logging(
        settings.log_level,
        json_lines=settings.log_json,
        log_file=data_dir / LOG_FILE,
        terminal_level="WARNING",
    )

    postgres = EmbeddedPostgres(data_dir) if embedded_db else None
    broker = EmbeddedBroker(port_or_free(1883)) if embedded_mqtt else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    tasks: list[asyncio.Task[None]] = []
    server: uvicorn.Server | None = None
    try:
        if postgres is not None:
            overrides["database_url"] = await asyncio.to_thread(postgres.start)
        if broker is not None:
            overrides["mqtt_url"] = await broker.start()
            overrides["mqtt_protocol"] = 3  # amqtt speaks MQTT 3.1.1 only
        settings = settings.model_copy(update=overrides)
        database_url = settings.require_database_url()

        applied = await asyncio.to_thread(migrate, database_url)
        log.info("migrations applied", extra={"applied": applied})

        def seed() -> tuple[list[str], str]:
            with connect(database_url) as conn:
                serials = seed_demo(conn, batteries=max(simulate, 1))
                token = token_for_phone(
                    conn,
                    ADMIN_PHONE,
                    secret=settings.require_jwt_secret(),
                    ttl=timedelta(minutes=settings.jwt_ttl_minutes),
                )
                return serials, token

        serials, token = await asyncio.to_thread(seed)

        port = port_or_free(settings.api_port, settings.api_host)
        config = uvicorn.Config(
            create_app(settings), host=settings.api_host, port=port, log_config=None, lifespan="on"
        )
        server = _QuietServer(config)
        tasks.append(asyncio.create_task(server.serve(), name="api"))
        tasks.append(asyncio.create_task(run_ingest(settings, stop), name="ingest"))
        tasks.append(asyncio.create_task(run_control(settings, stop), name="control"))
        tasks.append(asyncio.create_task(run_scheduler(settings, stop), name="scheduler"))
        if simulate:
            options = SimOptions(serials=serials[:simulate], interval=interval)
            tasks.append(asyncio.create_task(run_sim(settings, stop, options), name="sim"))
        tasks.append(asyncio.create_task(_demo_lender(settings, stop, api_port=port), name="nbfc-sim"))
        while not server.started:
            if tasks[0].done():
                await tasks[0]
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.05)

        api = f"http://{settings.api_host}:{port}"
        running = [task.get_name() for task in tasks]
        if simulate:
            running[running.index("sim")] = f"sim ({simulate} batteries)"
        running += [
            "PostgreSQL " + ("(embedded)" if postgres is not None else "(PACKFLEET_DATABASE_URL)"),
            "MQTT broker " + ("(embedded)" if broker is not None else "(PACKFLEET_MQTT_URL)"),
        ]
        write_state(data_dir, database_url=database_url, api=api, mqtt_url=settings.mqtt_url)
        print(
            _summary(
                api=api,
                token=token,
                settings=settings,
                database_url=database_url,
                running=running,
                seconds=time.monotonic() - started,
                first_serial=serials[0],
            ),
            flush=True,
        )

        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                log.error("service %s failed", task.get_name(), exc_info=task.exception())
    finally:
        remove_state(data_dir)
        stop.set()
        if server is not None:
            server.should_exit = True
        if tasks:
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
            for task, result in zip(tasks, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    log.error("service %s ended with an error: %r", task.get_name(), result)
        if broker is not None:
            await broker.stop()
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)
        log.info("packfleet stopped")


async def _demo_lender(settings: Settings, stop: asyncio.Event, *, api_port: int) -> None:
    """A simulated NBFC (DEMO-NBFC) that the API submits applications to and that calls the webhook
    back; the demo NBFC user acts for it. Port 8700 if free, else any."""
    host = settings.api_host
    try:
        sock = lender_socket(host, 8700)
    except OSError:
        sock = lender_socket(host, 0)
    url = f"http://{host}:{sock.getsockname()[1]}"

    def register() -> dict[str, object]:
        with connect(settings.require_database_url()) as conn:
            lender = ensure_lender(conn, code="DEMO-NBFC", name="Demo NBFC", api_base_url=url)
            link_user(conn, phone=NBFC_PHONE, code="DEMO-NBFC")
            return lender

    lender = await asyncio.to_thread(register)
    options = LenderOptions(
        code=str(lender["code"]),
        secret=str(lender["webhook_secret"]),
        webhook_url=f"http://{host}:{api_port}/api/nbfc/webhook-status",
        timezone=settings.finance_timezone,
    )
    await run_lender(options, stop, sock=sock)


def main(settings: Settings, *, simulate: int, interval: float) -> None:
    try:
        asyncio.run(up(settings, simulate=simulate, interval=interval))
    except KeyboardInterrupt:
        pass
