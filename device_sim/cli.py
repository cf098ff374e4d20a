"""`packfleet sim`: the simulator as a typer command (the packfleet CLI registers `sim` from here)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from device_sim.faults import Faults, FaultSpecError
from device_sim.main import BENGALURU, SimOptions, run
from packfleet.logs import setup_logging
from packfleet.metrics import serve_metrics
from packfleet.settings import Settings


def _city(text: str) -> tuple[float, float]:
    try:
        lat_text, lon_text = text.split(",")
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not LAT,LON (e.g. 12.9716,77.5946)") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise typer.BadParameter(f"{text!r} is not a place on Earth")
    return lat, lon


def sim(
    batteries: Annotated[int, typer.Option(help="how many batteries to simulate", min=1)] = 10,
    interval: Annotated[float, typer.Option(help="seconds between one battery's readings", min=0.05)] = 10.0,
    city: Annotated[
        str, typer.Option(help="LAT,LON the routes circle around")
    ] = f"{BENGALURU[0]},{BENGALURU[1]}",
    faults: Annotated[
        str,
        typer.Option(
            help="e.g. drop_ack=0.1,delay_ack=0.2:8,reject=0.05,flap=0.001:30,"
            "malformed=0.01,duplicate=0.02,skew=0.05:600,backlog=0.001:120"
        ),
    ] = "",
    provision: Annotated[bool, typer.Option(help="create missing batteries in the database")] = False,
    seed: Annotated[int, typer.Option(help="seed of the model and the faults")] = 0,
    prefix: Annotated[str, typer.Option(help="serials are PREFIX00001, PREFIX00002, ...")] = "SIM",
    serials: Annotated[
        str | None, typer.Option(help="comma-separated serials (instead of --batteries)")
    ] = None,
    dealer_id: Annotated[int | None, typer.Option(help="dealer of provisioned batteries")] = None,
    device_password: Annotated[
        str | None,
        typer.Option(help="log each device in as its serial with this password ({serial} is replaced)"),
    ] = None,
    time_scale: Annotated[
        float, typer.Option(help="model seconds per second (60: an hour a minute)", min=0.01)
    ] = 1.0,
    multiplexed: Annotated[
        int,
        typer.Option(
            help="LOAD TESTS ONLY: batteries share this many MQTT connections (no per-battery will); "
            "0 gives each battery its own",
            min=0,
        ),
    ] = 0,
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus metrics on this port")] = None,
    counts_file: Annotated[
        Path | None,
        typer.Option(
            help="write per-battery counts (readings acknowledged, pending, state, commands) here; "
            "SIGUSR1 then quiesces the fleet and writes exact counts, SIGUSR2 resumes"
        ),
    ] = None,
    summary_every: Annotated[float, typer.Option(help="seconds between summary lines", min=0.1)] = 5.0,
) -> None:
    """Simulate batteries speaking the MQTT device contract until Ctrl-C."""
    try:
        fault_rates = Faults.parse(faults)
    except FaultSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from None
    options = SimOptions(
        serials=[s.strip() for s in serials.split(",") if s.strip()] if serials else None,
        count=batteries,
        prefix=prefix,
        interval=interval,
        city=_city(city),
        faults=fault_rates,
        seed=seed,
        provision=provision,
        dealer_id=dealer_id,
        device_password=device_password,
        time_scale=time_scale,
        multiplexed=multiplexed,
        counts_file=counts_file,
        summary_every=summary_every,
    )
    try:
        options.serial_list()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--serials") from None
    settings = Settings()
    setup_logging(settings.log_level, json_lines=settings.log_json)
    if settings.mqtt_url is None:
        raise typer.BadParameter("set PACKFLEET_MQTT_URL (mqtt://[user:pass@]host:port)")
    serve_metrics(metrics_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop, options)

    asyncio.run(main())
