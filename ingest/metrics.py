"""Prometheus metrics of the ingest worker (default registry, served by packfleet.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ingest.parse import REASONS

RECEIVED = Counter("ingest_messages_received", "MQTT messages received", ["kind"])
READINGS_STORED = Counter("ingest_readings_stored", "Readings inserted into telemetry")
READINGS_DUPLICATE = Counter(
    "ingest_readings_duplicate", "Readings already stored (a redelivery or a repeat), skipped"
)
STATUS_UPDATES = Counter("ingest_status_updates", "Status messages applied to batteries")
STATUS_CONTRADICTIONS = Counter(
    "ingest_status_contradictions",
    "Statuses that newly contradict the battery's desired state while no command is pending",
)
REJECTED = Counter("ingest_rejected", "Messages sent to the dead-letter table", ["reason"])
BATCH_ROWS = Histogram(
    "ingest_batch_rows",
    "Readings per committed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000),
)
FLUSH_SECONDS = Histogram(
    "ingest_flush_seconds",
    "Time to write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DB_ERRORS = Counter("ingest_db_errors", "Failed batch writes (retried)", ["kind"])
QUEUE_DEPTH = Gauge("ingest_queue_depth", "Readings and messages held, not yet acknowledged")
QUEUE_BYTES = Gauge("ingest_queue_bytes", "Bytes the held messages take (payloads, dead letters, readings)")
OLDEST_UNACKED = Gauge(
    "ingest_oldest_unacked_seconds", "Age of the oldest received message not yet acknowledged"
)
ACKS_SKIPPED = Counter(
    "ingest_acks_skipped", "Committed messages not acknowledged because their connection was gone"
)
CONNECTED = Gauge("ingest_mqtt_connected", "1 while connected to the broker and subscribed")

for _reason in REASONS:
    REJECTED.labels(_reason)
for _kind in ("telemetry", "status", "invalid"):
    RECEIVED.labels(_kind)
