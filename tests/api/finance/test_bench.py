"""bench/finance.py still runs end to end, each disable once (a small run; slow: excluded by default)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.services import REPO


@pytest.mark.slow
def test_finance_bench_small_run(admin_url: str) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "bench/finance.py",
            "--admin-url",
            admin_url,
            "--loans",
            "300",
            "--overdue",
            "60",
            "--dealers",
            "3",
            "--payments",
            "100",
            "--queries",
            "20",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["commands_queued"] == figures["disabled"] == 60
    assert figures["second_run_disabled"] == 0 and figures["payments"] == 100
