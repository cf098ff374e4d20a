"""Prometheus metrics of the control service (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from control.acks import OPPOSITE_STATE, STATE_NOT_REPORTED

TRANSITIONS = Counter(
    "packfleet_command_transitions_total", "Command state transitions recorded by control", ["status"]
)
OPEN_COMMANDS = Gauge("packfleet_commands_open", "Commands not yet final, by state", ["status"])
PUBLISHES = Counter("packfleet_command_publishes_total", "Command publishes", ["kind"])  # first, retry
PUBLISH_ERRORS = Counter("packfleet_command_publish_errors_total", "Publishes the broker did not confirm")
ACK_LATENCY = Histogram(
    "packfleet_command_ack_seconds",
    "From the latest publish of a command to the device's acknowledgement",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
ACKS = Counter("packfleet_command_acks_total", "Acknowledgements received", ["outcome"])
DEAD_LETTERS = Counter(
    "packfleet_control_dead_letters_total", "Messages control could not accept", ["reason"]
)
INBOUND_DROPPED = Counter(
    "packfleet_control_inbound_dropped_total",
    "Device messages dropped because too many wait for the database (acks are recovered by re-sending)",
    ["kind"],
)
CONTRADICTIONS = Counter(
    "packfleet_command_contradictions_total",
    "Applied acks that do not confirm the commanded state (opposite state, or none said)",
    ["kind"],
)
for _kind in (OPPOSITE_STATE, STATE_NOT_REPORTED):
    CONTRADICTIONS.labels(_kind)
