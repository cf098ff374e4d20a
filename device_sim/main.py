"""The simulator's entry point: `run(settings, stop, options)` until `stop` is set."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device_sim.device import Link
from device_sim.faults import Faults
from device_sim.fleet import Fleet, raise_fd_limit
from device_sim.model import DEFAULT_PACKS, PackSpec
from device_sim.provision import provision, stored_specs
from device_sim.transport import Driver
from packfleet.settings import Settings
from schemas.topics import is_valid_serial

log = logging.getLogger(__name__)

BENGALURU = (12.9716, 77.5946)
_FDS_SPARE = 256  # files the process needs besides one socket per device


@dataclass
class SimOptions:
    """What to simulate: these serials, or `count` of them named `{prefix}{n:05d}`."""

    serials: list[str] | None = None
    count: int = 10
    prefix: str = "SIM"
    interval: float = 10.0  # seconds between one battery's readings
    city: tuple[float, float] = BENGALURU
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    provision: bool = False  # create missing batteries in the database so ingest accepts them
    dealer_id: int | None = None  # owner dealer of provisioned batteries
    specs_from_db: bool = True  # model each battery on the pack spec the database has for it
    device_password: str | None = None  # set: devices log in as their serial (production ACL); {serial} ok
    time_scale: float = 1.0  # model seconds per wall second: 60 makes an hour of riding a minute
    summary_every: float = 5.0
    # 0: one MQTT connection per battery, each with its own identity and will (the real thing).
    # N: MULTIPLEXED MODE for load tests beyond the open-files limit: batteries share N
    # connections, and lose their own identity and will (see multiplex.py).
    multiplexed: int = 0
    # Set: per-battery counts are written here (device_sim/counts.py); SIGUSR1 quiesces, SIGUSR2 resumes.
    counts_file: Path | None = None

    def serial_list(self) -> list[str]:
        if self.serials is not None:
            serials = list(self.serials)
        else:
            width = max(5, len(str(self.count)))
            serials = [f"{self.prefix}{i:0{width}d}" for i in range(1, self.count + 1)]
        bad = [s for s in serials if not is_valid_serial(s)]
        if bad:
            raise ValueError(f"not valid serial numbers ([A-Za-z0-9_-]{{1,64}}): {bad[:5]}")
        if len(set(serials)) != len(serials):
            raise ValueError("serial numbers repeat")
        return serials


def default_specs(serials: list[str], seed: int) -> dict[str, PackSpec]:
    """A seeded mix of the catalogue's packs: mostly 48 V NMC, some LFP, a few 60 V."""
    rng = np.random.default_rng([seed, 7])
    picks = rng.choice(len(DEFAULT_PACKS), size=len(serials), p=[0.5, 0.35, 0.15])
    return {s: DEFAULT_PACKS[int(k)] for s, k in zip(serials, picks, strict=True)}


async def _specs(settings: Settings, options: SimOptions, serials: list[str]) -> list[PackSpec]:
    specs = default_specs(serials, options.seed)
    url = settings.database_url
    if options.provision:
        if url is None:
            raise RuntimeError("--provision needs PACKFLEET_DATABASE_URL")
        location = (
            "Bengaluru" if options.city == BENGALURU else f"{options.city[0]:.4f},{options.city[1]:.4f}"
        )
        await asyncio.to_thread(provision, url, specs, location=location, dealer_id=options.dealer_id)
    if url is not None and (options.specs_from_db or options.provision):
        try:
            specs.update(await asyncio.to_thread(stored_specs, url, serials))
        except Exception as exc:  # the simulator does not need the database to run
            log.warning(
                "could not read pack specs from the database; using the catalogue's",
                extra={"error": repr(exc)},
            )
    return [specs[s] for s in serials]


async def run(settings: Settings, stop: asyncio.Event, options: SimOptions | None = None) -> None:
    """Simulate the batteries until `stop` is set, then take them offline cleanly."""
    options = options or SimOptions()
    if options.interval < 0.05:
        raise ValueError("interval must be at least 0.05 s")
    serials = options.serial_list()
    specs = await _specs(settings, options, serials)
    sockets = min(options.multiplexed, len(serials)) if options.multiplexed > 0 else len(serials)
    fds = raise_fd_limit(sockets + _FDS_SPARE)
    if fds < sockets + _FDS_SPARE:
        log.warning(
            "open-files limit allows about %d connections for %d batteries: use --multiplexed to share them",
            fds - _FDS_SPARE,
            sockets,
            extra={"nofile": fds},
        )
    target = settings.mqtt
    driver = Driver(asyncio.get_running_loop())
    link = Link(
        driver=driver,
        host=target.host,
        port=target.port,
        protocol=settings.mqtt_protocol,
        username=target.username,
        password=target.password,
        device_password=options.device_password,
    )
    log.info(
        "simulating %d batteries",
        len(serials),
        extra={
            "batteries": len(serials),
            "interval_s": options.interval,
            "broker": repr(target),
            "mqtt_protocol": settings.mqtt_protocol,
            "faults": options.faults.describe(),
            "seed": options.seed,
            "nofile": fds,
            "connections": sockets,
        },
    )
    if options.multiplexed > 0:
        log.warning(
            "MULTIPLEXED MODE (load tests only): %d batteries share %d MQTT connections, "
            "without per-battery client ids or will messages",
            len(serials),
            sockets,
        )
    fleet = Fleet(
        serials=serials,
        specs=specs,
        link=link,
        faults=options.faults,
        seed=options.seed,
        interval=options.interval,
        city=options.city,
        time_scale=options.time_scale,
        summary_every=options.summary_every,
        multiplexed=options.multiplexed,
        counts_file=options.counts_file,
    )
    await fleet.run(stop)
