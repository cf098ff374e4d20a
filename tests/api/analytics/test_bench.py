"""bench/analytics.py still runs end to end (small run; slow: excluded by default)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.services import REPO

SMALL = ["--batteries", "200", "--loans", "150", "--tickets", "100", "--history-days", "10",
         "--health-batteries", "5", "--health-days", "1", "--samples", "5"]  # fmt: skip


@pytest.mark.slow
def test_analytics_bench_small_run(admin_url: str) -> None:
    run = subprocess.run(
        [sys.executable, "bench/analytics.py", "--admin-url", admin_url, *SMALL],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(result["endpoints"]) == {
        "dealer_dashboard",
        "nbfc_portfolio",
        "collection_report",
        "battery_health",
        "service_metrics",
        "active",
    }
    assert result["fixture"]["loans"] == 150 and result["fixture"]["tickets"] == 100
    job = result["health_job"]
    assert job["estimated"] == 5 and job["max_error_points"] < 5
