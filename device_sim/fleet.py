"""The simulated fleet: the model ticking, devices connecting with progress, readings spread over
each interval, and a summary line every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import threading
import time
from pathlib import Path

import numpy as np

from device_sim import counts
from device_sim.device import Device, Link, Stats
from device_sim.faults import Faults
from device_sim.metrics import export
from device_sim.model import FleetModel, PackSpec
from device_sim.multiplex import SharedConnection

log = logging.getLogger(__name__)

MAX_BEHIND_S = 120.0  # beyond this the simulator is simply overloaded: skip ahead rather than catch up
QUIESCE_TIMEOUT_S = 120.0  # how long a quiesce waits for every device to be connected with nothing pending


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted` (within the hard limit); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class Fleet:
    """Devices over one model; `run` drives them until `stop` is set."""

    def __init__(
        self,
        *,
        serials: list[str],
        specs: list[PackSpec],
        link: Link,
        faults: Faults,
        seed: int,
        interval: float,
        city: tuple[float, float],
        time_scale: float = 1.0,
        summary_every: float = 5.0,
        multiplexed: int = 0,
        counts_file: Path | None = None,
    ) -> None:
        self.model = FleetModel(specs, seed=seed, city=city, start_time=time.time())
        self.link = link
        self.interval = interval
        self.time_scale = time_scale
        self.summary_every = summary_every
        self.counts_file = counts_file
        self.paused = False  # quiesced: no readings are taken until resumed
        self._quiescing: asyncio.Task[None] | None = None
        self.devices = [
            Device(serial=s, index=i, model=self.model, link=link, faults=faults, seed=seed * 1_000_003 + i)
            for i, s in enumerate(serials)
        ]
        # Multiplexed mode (load tests only): the batteries share this many connections.
        self.shared: list[SharedConnection] = []
        if multiplexed > 0:
            size = -(-len(self.devices) // min(multiplexed, len(self.devices)))
            self.shared = [
                SharedConnection(
                    name=f"mux-{self.devices[k].serial}-{k // size}",
                    devices=self.devices[k : k + size],
                    link=link,
                    seed=seed * 7_919 + k,
                )
                for k in range(0, len(self.devices), size)
            ]
        # The model ticks about once a second; each device reads at its own slot of the interval,
        # so 10,000 devices at 10 s make a steady 1,000 readings/s rather than a burst every 10 s.
        self.slots = max(1, round(interval))
        self.tick = interval / self.slots
        self._slot_members = [np.arange(k, len(serials), self.slots) for k in range(self.slots)]

    @property
    def stats(self) -> Stats:
        return self.link.stats

    async def run(self, stop: asyncio.Event) -> None:
        link = self.link
        link.driver.start()
        self._last = (time.monotonic(), 0, 0)
        ticker = asyncio.create_task(self._tick(stop), name="sim-tick")
        summary = asyncio.create_task(self._summaries(stop), name="sim-summary")
        if self.counts_file is not None and threading.current_thread() is threading.main_thread():
            # A harness asks for exact counts: SIGUSR1 quiesces (and writes them), SIGUSR2 resumes.
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGUSR1, self._start_quiesce)
            loop.add_signal_handler(signal.SIGUSR2, self.resume)
        try:
            await self._connect_all(stop)
            await stop.wait()
        finally:
            ticker.cancel()
            await self._shutdown()
            summary.cancel()
            await asyncio.gather(ticker, summary, return_exceptions=True)
            await link.driver.close()
            self._summary(final=True)
            self._write_counts(quiesced=False)

    async def _connect_all(self, stop: asyncio.Event) -> None:
        links: list[Device] | list[SharedConnection] = self.shared or self.devices
        total = len(links)
        started = time.monotonic()
        done = 0
        last_note = started

        async def one(link: Device | SharedConnection) -> None:
            nonlocal done, last_note
            if stop.is_set():
                return
            await link.connect()
            done += 1
            now = time.monotonic()
            if now - last_note >= 2.0 and done < total:
                last_note = now
                log.info(
                    "connecting %d/%d",
                    done,
                    total,
                    extra={"attempted": done, "connected": self.stats.connected},
                )

        await asyncio.gather(*(one(link) for link in links))
        seconds = round(time.monotonic() - started, 1)
        log.info(
            "devices connected: %d/%d in %.1f s",
            self.stats.connected,
            len(self.devices),
            seconds,
            extra={
                "connected": self.stats.connected,
                "total": len(self.devices),
                "connections": total,
                "seconds": seconds,
            },
        )

    async def _tick(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        wall_offset = time.time() - next_at  # readings are stamped with their scheduled time
        slot = 0
        warned_at = 0.0
        while not stop.is_set():
            next_at += self.tick
            # Sleep first: the first readings come one tick in, once most devices are connected.
            delay = next_at - loop.time()
            if delay < -MAX_BEHIND_S:
                log.warning(
                    "simulator fell %.0f s behind: skipping ahead", -delay, extra={"behind_s": -delay}
                )
                next_at = loop.time()
            elif delay < -5 * self.tick and loop.time() - warned_at > 10:
                # Late (a reconnect storm, a busy machine): catch up tick by tick, so every reading
                # is still taken, stamped when it was due, like a device whose upload is late.
                warned_at = loop.time()
                log.warning(
                    "simulator is %.1f s behind, catching up", -delay, extra={"behind_s": round(-delay, 1)}
                )
            await asyncio.sleep(max(0.0, delay))
            # A fixed dt (not the measured one) keeps a seeded run's readings reproducible.
            self.model.step(self.tick * self.time_scale)
            members = self._slot_members[slot]
            slot = (slot + 1) % self.slots
            if self.paused:
                continue
            at = next_at + wall_offset
            for index, values in zip(members.tolist(), self.model.readings(members), strict=True):
                self.devices[index].record(values, at=at)

    def _start_quiesce(self) -> None:
        if self._quiescing is None or self._quiescing.done():
            self._quiescing = asyncio.get_running_loop().create_task(self.quiesce(), name="sim-quiesce")

    async def quiesce(self, within_s: float = QUIESCE_TIMEOUT_S) -> bool:
        """Stop taking readings, wait until every device is connected with nothing unacknowledged,
        and write the counts; True when it got there within `within_s`."""
        self.paused = True
        deadline = time.monotonic() + within_s
        settled = False
        while time.monotonic() < deadline:
            settled = all(d.connected and d.readings_pending == 0 for d in self.devices)
            if settled:
                break
            await asyncio.sleep(0.1)
        self._write_counts(quiesced=settled)
        log.info("quiesced" if settled else "could not quiesce", extra={"quiesced": settled})
        return settled

    def resume(self) -> None:
        """Take readings again after a quiesce."""
        if self._quiescing is not None:
            self._quiescing.cancel()
        self.paused = False
        self._write_counts(quiesced=False)

    def _write_counts(self, *, quiesced: bool) -> None:
        if self.counts_file is not None:
            counts.write(
                self.counts_file, counts.snapshot(self.devices, quiesced=quiesced, paused=self.paused)
            )

    async def _shutdown(self) -> None:
        """Tell the broker each device is going offline, then close every connection."""
        self.link.stopping = True
        statuses = [device.go_offline() for device in self.devices]
        if self.shared:
            # mosquitto 2.0 dropped some of a burst of statuses followed at once by DISCONNECT on a
            # shared connection ("disconnected due to out of memory"): wait for their PUBACKs first.
            for _ in range(100):
                if all(info is None or info.is_published() for info in statuses):
                    break
                await asyncio.sleep(0.05)
        for shared in self.shared:
            shared.close()
        if self.stats.connected > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.link.all_offline.wait(), timeout=10.0)

    async def _summaries(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.summary_every)
            self._summary()

    _last: tuple[float, int, int] | None = None

    def _summary(self, *, final: bool = False) -> None:
        s = self.stats
        now = time.monotonic()
        last_t, last_readings, _ = self._last or (now, s.readings_published, 0)
        rate = (s.readings_published - last_readings) / (now - last_t) if now > last_t else 0.0
        self._last = (now, s.readings_published, 0)
        buffered = sum(len(d.backlog) for d in self.devices)
        export(s, buffered=buffered)
        if not self.paused:  # a quiesced fleet's file keeps saying so until resumed
            self._write_counts(quiesced=False)
        log.info(
            "sim %s: %d/%d connected, %.0f readings/s, %d commands applied",
            "stopped" if final else "running",
            s.connected,
            len(self.devices),
            rate,
            s.commands_applied,
            extra={
                "connected": s.connected,
                "batteries": len(self.devices),
                "readings_per_s": round(rate, 1),
                "readings_published": s.readings_published,
                "buffered": buffered,
                "commands_applied": s.commands_applied,
                "commands_rejected": s.commands_rejected,
                "acks_sent": s.acks_sent,
                "disconnects": s.disconnects,
                "flaps": s.flaps,
            },
        )
