"""Bounded memory: what a misbehaving device can make a worker hold, and what it leaves behind."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psutil
import psycopg

from tests import services
from tests.ingest.conftest import Publisher, WorkerProcess, provision, scalar, wait_for, worker_env

MiB = 2**20
BUFFER_MB = 16
# The broker's max_packet_size (mosquitto.conf) is 300,000 bytes: the largest payload that reaches us.
TOO_LARGE = 299_000
ALMOST_TOO_LARGE = 256 * 1024 - 100  # under the contract's cap, so its first 64 KiB are kept
BURST = 400  # of each


def _peak_and_now(pid: int) -> tuple[int, int]:
    """The process's high-water mark and current resident set, in bytes (Linux /proc)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmHWM"].split()[0]) * 1024, int(fields["VmRSS"].split()[0]) * 1024


def test_a_burst_of_maximum_size_bad_payloads_keeps_the_worker_small(
    fresh_database_url: str, own_mosquitto: services.Mosquitto, tmp_path: Path
) -> None:
    url = fresh_database_url
    [serial] = provision(url, 1)
    topic = f"batteries/{serial}/telemetry"
    env = worker_env(url, own_mosquitto, ingest_max_buffered_mb=BUFFER_MB, ingest_batch_ms=3000)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    assert worker.proc is not None
    process = psutil.Process(worker.proc.pid)
    device = Publisher(own_mosquitto)
    try:
        reading = {"ts": int(time.time() * 1000), "voltage": 48.0, "current": 1.0, "soc": 50}
        device.send(topic, json.dumps(reading).encode())  # warm: connections, caches, a first batch
        wait_for(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 1)
        time.sleep(0.5)
        baseline = process.memory_info().rss

        too_large = b'{"pad": "' + b"x" * (TOO_LARGE - 11) + b'"}'
        not_json = b'{"pad": "' + b"y" * (ALMOST_TOO_LARGE - 9)  # never closed
        burst = [(topic, too_large if n % 2 else not_json) for n in range(2 * BURST)]
        sender = threading.Thread(target=device.send_many, args=(burst,), daemon=True)
        sender.start()
        wait_for(lambda: scalar(url, "SELECT count(*) FROM dead_letters") == 2 * BURST, timeout=120)
        sender.join(30)
        peak, _ = _peak_and_now(worker.proc.pid)
        time.sleep(1.5)  # a batch's memory goes back once it is written
        after = process.memory_info().rss
    finally:
        device.close()
        assert worker.stop() == 0
    # ~230 MB of bad payloads went through (before the bound in bytes the worker peaked 270 MiB above
    # its start, and stayed there); it held at most its buffer's bound of them (+18 MiB measured here),
    # and gave that back once written (+2 MiB).
    assert peak - baseline < (BUFFER_MB + 24) * MiB, (baseline / MiB, peak / MiB)
    assert after - baseline < 12 * MiB, (baseline / MiB, after / MiB)
    with psycopg.connect(url) as conn:
        kept = dict(
            conn.execute("SELECT reason, max(length(payload)) FROM dead_letters GROUP BY reason").fetchall()
        )
    # Refused for its size: only a short prefix is kept; refused for its content: the first 64 KiB.
    assert kept == {"too_large": 1024, "invalid_json": 64 * 1024}, kept
