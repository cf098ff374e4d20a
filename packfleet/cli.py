"""The `packfleet` command: the whole stack (`up`) or one part each, for production."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
import uvicorn
from pydantic import SecretStr, ValidationError

from packfleet.local import jwt_secret_file, running_stack
from packfleet.logs import setup_logging
from packfleet.settings import MissingSetting, Settings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
app.add_typer(user_app, name="user")


def _settings(**overrides: object) -> Settings:
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    setup_logging(settings.log_level, json_lines=settings.log_json)
    return settings


def _operator_settings() -> Settings:
    """Settings of an operator command: what is unset comes from the `packfleet up` running from
    the data dir (its database and JWT secret), so the command works from a second shell."""
    settings = _settings()
    found: dict[str, object] = {}
    data_dir = settings.data_dir.resolve()
    if settings.database_url is None:
        stack = running_stack(data_dir)
        if stack is None:
            raise MissingSetting(
                "no database: set PACKFLEET_DATABASE_URL, or start `packfleet up` "
                f"(none runs from {data_dir})"
            )
        found["database_url"] = stack["database_url"]
    if settings.jwt_secret is None and (secret := jwt_secret_file(data_dir)) is not None:
        found["jwt_secret"] = SecretStr(secret)
    return settings.model_copy(update=found)


def _one_line_errors(command: Callable[..., None]) -> Callable[..., None]:
    """A missing or bad setting, or an unreachable database, is one line on stderr, not a traceback."""

    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> None:
        try:
            command(*args, **kwargs)
        except MissingSetting as exc:
            _fail(str(exc))
        except ValidationError as exc:
            _fail("; ".join(_setting_error(e) for e in exc.errors()))
        except psycopg.OperationalError as exc:
            _fail(f"cannot reach the database: {str(exc).strip().splitlines()[0]}")

    return run


def _setting_error(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    names = ".".join(map(str, error["loc"]))
    return f"PACKFLEET_{names.upper()}: {message}" if names else message


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _serve(service: Callable[[Settings, asyncio.Event], Awaitable[None]], settings: Settings) -> None:
    """Run one long-lived service until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await service(settings, stop)

    asyncio.run(main())


@app.command()
@_one_line_errors
def up(
    data_dir: Annotated[Path | None, typer.Option(help="where embedded data lives")] = None,
    batteries: Annotated[int, typer.Option(help="simulated demo batteries (0: none)")] = 24,
    interval: Annotated[float, typer.Option(help="seconds between a battery's readings")] = 5.0,
) -> None:
    """Start everything: embedded broker and database unless configured, migrations, demo data,
    ingest, control, the scheduler, the API and a simulator."""
    from packfleet.up import main

    main(_settings(data_dir=data_dir), simulate=batteries, interval=interval)


@app.command()
@_one_line_errors
def migrate() -> None:
    """Apply pending database migrations."""
    from packfleet.migrate import migrate as apply

    applied = apply(_operator_settings().require_database_url())
    typer.echo("\n".join(applied) if applied else "database is up to date")


@app.command()
@_one_line_errors
def api(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int | None, typer.Option(help="processes serving the port (one per core)")] = None,
) -> None:
    """Serve the REST API."""
    settings = _settings(api_host=host, api_port=port, api_workers=workers)
    settings.require_jwt_secret()
    if settings.api_workers == 1:
        from api.app import create_app

        uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None)
        return
    if not settings.redis_url:
        logging.getLogger(__name__).warning(
            "several API processes count rate limits each on their own; set PACKFLEET_REDIS_URL to share them"
        )
    # Each worker process builds the app from the same PACKFLEET_* environment.
    uvicorn.run(
        "api.app:app_from_environment",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        log_config=None,
    )


@app.command()
@_one_line_errors
def openapi(
    postman: Annotated[bool, typer.Option("--postman", help="a Postman v2.1 collection instead")] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="write here (default: stdout)")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="the collection's {{baseUrl}} (default: the API's host and port)")
    ] = None,
) -> None:
    """Print the API's OpenAPI document, or a Postman collection converted from it."""
    import json

    from api.app import create_app
    from api.postman import collection

    settings = _settings()
    document = create_app(settings).openapi()
    if postman:
        document = collection(
            document, base_url=base_url or f"http://{settings.api_host}:{settings.api_port}"
        )
    text = json.dumps(document, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


@app.command()
@_one_line_errors
def ingest(
    retire: Annotated[
        bool, typer.Option(help="store what this worker's MQTT session holds, then end the session for good")
    ] = False,
) -> None:
    """Run an ingest worker (telemetry and status from MQTT into the database)."""
    from ingest.main import run

    _serve(functools.partial(run, retire=retire), _settings())


@app.command()
@_one_line_errors
def control() -> None:
    """Run the control service (publishes commands, tracks acknowledgements, retries, expiry)."""
    from control.main import run

    _serve(run, _settings())


@app.command()
@_one_line_errors
def scheduler() -> None:
    """Run the scheduled business jobs (every domain's, on one scheduler; run one such process)."""
    from packfleet.scheduler import run

    _serve(run, _settings())


@app.command("seed-demo")
@_one_line_errors
def seed_demo(batteries: Annotated[int, typer.Option()] = 24) -> None:
    """Load the demo dealer, users, consumers and batteries (idempotent)."""
    from packfleet.db import connect
    from packfleet.demo import seed_demo as seed

    with connect(_operator_settings().require_database_url()) as conn:
        serials = seed(conn, batteries=batteries)
    typer.echo(f"demo data ready: {len(serials)} batteries {serials[0]}..{serials[-1]}")


@user_app.command("add")
@_one_line_errors
def user_add(
    phone: Annotated[str, typer.Option(help="E.164, e.g. +919876543210")],
    name: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="admin, dealer, technician or nbfc")],
    dealer_id: Annotated[int | None, typer.Option(help="a dealer user's dealer (new one if unset)")] = None,
) -> None:
    """Add a user who can then log in by OTP."""
    from packfleet.accounts import AccountError, add_user
    from packfleet.db import connect

    with connect(_operator_settings().require_database_url()) as conn:
        try:
            user = add_user(conn, phone=phone, name=name, role=role, dealer_id=dealer_id)
        except AccountError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"user {user['id']} {user['phone']} role={user['role']} dealer_id={user['dealer_id']}")


@app.command()
@_one_line_errors
def token(
    phone: Annotated[str, typer.Option(help="the user's phone")],
    hours: Annotated[float, typer.Option(help="validity")] = 24.0,
) -> None:
    """Print a JWT for an existing user (an operator's tool for scripts)."""
    from packfleet.accounts import AccountError, token_for_phone
    from packfleet.db import connect

    settings = _operator_settings()
    secret = settings.require_jwt_secret()
    with connect(settings.require_database_url()) as conn:
        try:
            jwt = token_for_phone(conn, phone, secret=secret, ttl=timedelta(hours=hours))
        except AccountError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(jwt)


def _register_sim() -> None:
    """`packfleet sim` is the simulator's own typer command (device_sim/cli.py)."""
    from device_sim.cli import sim

    app.command("sim", help="Simulate batteries speaking the MQTT device contract.")(sim)


_register_sim()


# --- NBFC (lenders) --------------------------------------------------------------------------------

nbfc_app = typer.Typer(help="Manage NBFCs (lenders).", no_args_is_help=True)
app.add_typer(nbfc_app, name="nbfc")


@nbfc_app.command("add")
def nbfc_add(
    code: Annotated[str, typer.Option(help="the lender's code (its webhooks' X-NBFC-Id)")],
    name: Annotated[str, typer.Option()],
    url: Annotated[str | None, typer.Option(help="its API base URL (default PACKFLEET_NBFC_API_URL)")] = None,
) -> None:
    """Register a lender (or update its URL); prints the secret it signs its webhooks with."""
    from api.nbfc.lenders import LenderError, ensure_lender
    from packfleet.db import connect

    with connect(_settings().require_database_url()) as conn:
        try:
            lender = ensure_lender(conn, code=code, name=name, api_base_url=url)
        except LenderError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"nbfc {lender['id']} {lender['code']} webhook_secret={lender['webhook_secret']}")


@nbfc_app.command("link-user")
def nbfc_link_user(
    phone: Annotated[str, typer.Option(help="an NBFC user's phone")],
    code: Annotated[str, typer.Option(help="the lender it acts for")],
) -> None:
    """Let an NBFC user see the applications and portfolio of one lender."""
    from api.nbfc.lenders import LenderError, link_user
    from packfleet.db import connect

    with connect(_settings().require_database_url()) as conn:
        try:
            user = link_user(conn, phone=phone, code=code)
        except LenderError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"user {user['id']} {user['phone']} nbfc_id={user['nbfc_id']}")


@app.command("nbfc-sim")
def nbfc_sim(
    secret: Annotated[str, typer.Option(envvar="PACKFLEET_NBFC_SIM_SECRET", help="its webhook secret")],
    webhook_url: Annotated[str, typer.Option(help="packfleet's POST /api/nbfc/webhook-status URL")],
    code: Annotated[str, typer.Option(help="its code (X-NBFC-Id)")] = "DEMO-NBFC",
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8700,
    api_key: Annotated[
        str | None, typer.Option(envvar="PACKFLEET_NBFC_API_KEY", help="bearer it requires")
    ] = None,
    decision_delay: Annotated[float, typer.Option(help="seconds before it decides")] = 5.0,
    disburse_after: Annotated[
        float, typer.Option(help="seconds from approval to disbursement (<0: never)")
    ] = 2.0,
    approve_rate: Annotated[float, typer.Option(min=0, max=1, help="share of applications approved")] = 1.0,
) -> None:
    """Run a simulated lender: takes applications, decides after a delay, calls our signed webhook."""
    from nbfc_sim.lender import LenderOptions
    from nbfc_sim.main import run

    options = LenderOptions(
        code=code,
        secret=secret,
        webhook_url=webhook_url,
        api_key=api_key,
        decision_delay_s=decision_delay,
        disburse_after_s=None if disburse_after < 0 else disburse_after,
        approve_rate=approve_rate,
    )
    _serve(lambda _settings, stop: run(options, stop, host=host, port=port), _settings())
