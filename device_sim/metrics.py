"""Prometheus metrics of the simulator, updated from its counters at each summary (not per message)."""

from __future__ import annotations

from dataclasses import asdict

from prometheus_client import Counter, Gauge

from device_sim.device import Stats

CONNECTED = Gauge("packfleet_sim_connected", "Simulated batteries connected to the broker")
BUFFERED = Gauge("packfleet_sim_buffered_readings", "Readings held by simulated batteries for upload")
_COUNTERS = {
    name: Counter(f"packfleet_sim_{name}", f"Simulator: {name.replace('_', ' ')}")
    for name in (
        "readings_published",
        "commands_received",
        "commands_applied",
        "commands_rejected",
        "acks_sent",
        "acks_dropped",
        "connects",
        "connect_failures",
        "disconnects",
        "flaps",
        "malformed_sent",
        "duplicates_sent",
        "backlog_bursts",
    )
}
_exported: dict[int, dict[str, int]] = {}


def export(stats: Stats, *, buffered: int) -> None:
    """Move the counters forward by what happened since the last export of these stats."""
    CONNECTED.set(stats.connected)
    BUFFERED.set(buffered)
    current = asdict(stats)
    before = _exported.setdefault(id(stats), {})
    for name, counter in _COUNTERS.items():
        delta = current[name] - before.get(name, 0)
        if delta > 0:
            counter.inc(delta)
    _exported[id(stats)] = current
