"""bench/api.py still runs end to end (small run; slow: excluded by default)."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from tests.services import REPO


@pytest.mark.slow
def test_api_bench_small_run(admin_url: str) -> None:
    def bench_databases() -> set[str]:
        with psycopg.connect(admin_url) as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'packfleet_bench_%'")
            return {r[0] for r in rows}

    before = bench_databases()
    run = subprocess.run(
        [
            sys.executable,
            "bench/api.py",
            "--admin-url",
            admin_url,
            "--batteries",
            "300",
            "--clients",
            "4",
            "--seconds",
            "1",
            "--csv-rows",
            "2000",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["battery_detail"]["errors"] == 0 and result["battery_detail"]["requests"] > 0
    assert result["battery_pack_list_100"]["errors"] == 0
    assert result["csv_import"]["created"] == 2000
    for endpoint in ("battery_detail", "battery_pack_list_100"):
        assert result["paced"][endpoint]["errors"] == 0 and result["paced"][endpoint]["requests"] > 0
    assert bench_databases() == before  # its database is dropped
