"""bench/telemetry_query.py still runs end to end (a tiny run; slow: excluded by default)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.services import REPO


@pytest.mark.slow
def test_telemetry_query_bench_small_run(admin_url: str) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "bench/telemetry_query.py",
            "--admin-url",
            admin_url,
            "--batteries",
            "20",
            "--days",
            "1",
            "--samples",
            "5",
            "--batches",
            "3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["rows"] == 20 * 1440
    assert set(result["queries"]) == {
        "hourly_30d_one_battery",
        "raw_24h_one_battery",
        "fleet_latest",
        "fleet_positions",
        "fleet_7d_hourly",
    }
    assert result["queries"]["fleet_positions"]["items"] == 20
