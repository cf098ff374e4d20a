"""`packfleet up` with embedded defaults: ready in seconds, serves the API and live telemetry, stops clean."""

from __future__ import annotations

import functools
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from packfleet.demo import DEALER_PHONE

START_BUDGET_S = 15.0  # the promise made to a newcomer


def start_up(
    data_dir: Path, *, batteries: int = 5, stderr: Any = subprocess.DEVNULL
) -> tuple[subprocess.Popen[str], dict[str, str], float]:
    """`packfleet up` with no settings but a free API port; its printed PACKFLEET_* values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKFLEET_")}
    env["PACKFLEET_API_PORT"] = "0"
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "packfleet",
            "up",
            "--data-dir",
            str(data_dir),
            "--batteries",
            str(batteries),
            "--interval",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    values: dict[str, str] = {}
    assert proc.stdout is not None
    while "PACKFLEET_TOKEN" not in values:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"packfleet up exited with {proc.wait()} before printing its settings")
        if line.startswith("PACKFLEET_") and "=" in line:
            key, _, value = line.strip().partition("=")
            values[key] = value
    return proc, values, time.monotonic() - started


def _stop(proc: subprocess.Popen[str], sig: int) -> None:
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    assert proc.wait(30) == 0
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def _postgres_running(data_dir: Path) -> bool:
    return any(
        p.info["name"] == "postgres" and str(data_dir.resolve()) in " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["name", "cmdline"])
    )


def test_up_serves_telemetry_and_stops_clean_then_reuses_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "pf"
    proc, values, ready_s = start_up(data_dir)
    try:
        assert ready_s < START_BUDGET_S, f"ready after {ready_s:.1f}s"
        assert values["PACKFLEET_MQTT_URL"].startswith("mqtt://127.0.0.1:")
        assert values["PACKFLEET_DATABASE_URL"].startswith("postgresql://")
        api = values["PACKFLEET_API"]
        headers = {"Authorization": f"Bearer {values['PACKFLEET_TOKEN']}"}
        assert httpx.get(f"{api}/api-docs").status_code == 200
        deadline = started = time.monotonic()
        deadline += START_BUDGET_S
        body: dict = {}
        while time.monotonic() < deadline:
            body = httpx.get(f"{api}/api/batteries/DEMO0001", headers=headers).json()
            if body.get("telemetry"):
                break
            time.sleep(0.5)
        assert body.get("telemetry"), (
            f"no simulator telemetry after {time.monotonic() - started:.1f}s: {body}"
        )
        assert 0 <= body["telemetry"]["soc"] <= 100
    finally:
        if proc.poll() is None:
            _stop(proc, signal.SIGINT)
    assert not _postgres_running(data_dir), "embedded PostgreSQL left running"

    proc, values, _ = start_up(data_dir)
    try:
        api = values["PACKFLEET_API"]
        headers = {"Authorization": f"Bearer {values['PACKFLEET_TOKEN']}"}
        batteries = httpx.get(f"{api}/api/batteries", headers=headers).json()
        assert len(batteries) == 5  # the same demo data, not a second copy
        assert httpx.get(f"{api}/api/batteries/DEMO0001", headers=headers).json()["telemetry"]
    finally:
        _stop(proc, signal.SIGTERM)
    assert not _postgres_running(data_dir)


def test_a_killed_up_leaves_postgres_that_the_next_up_adopts_and_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "pf"
    proc, _, _ = start_up(data_dir)
    proc.kill()  # SIGKILL: no chance to stop the embedded server
    proc.wait(10)
    assert _postgres_running(data_dir)
    proc, values, _ = start_up(data_dir)
    try:
        headers = {"Authorization": f"Bearer {values['PACKFLEET_TOKEN']}"}
        assert httpx.get(f"{values['PACKFLEET_API']}/api/batteries", headers=headers).status_code == 200
    finally:
        _stop(proc, signal.SIGINT)
    assert not _postgres_running(data_dir), "the adopted PostgreSQL was left running"


def _read_until(fd: int, marker: str, timeout: float = START_BUDGET_S) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{marker!r} not on the terminal: {seen.decode(errors='replace')[-2000:]}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen.decode(errors="replace")


def test_on_a_terminal_up_is_a_summary_and_operator_commands_find_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "pf"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKFLEET_")}
    env["PACKFLEET_API_PORT"] = "0"
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "packfleet", "up", "--data-dir", str(data_dir), "--batteries", "2"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    try:
        screen = _read_until(primary, "Ctrl-C stops everything")
        api = re.search(r"PACKFLEET_API=(\S+)", screen)[1]  # type: ignore[index]
        assert f"{api}/dashboard/#token=" in screen and "api, ingest, control, scheduler" in screen
        assert '{"ts"' not in screen, "JSON log lines on the terminal"
        assert "initdb" not in screen.lower() and "migration" not in screen.lower()
        httpx.post(f"{api}/api/auth/login", json={"phone": DEALER_PHONE, "userType": "dealer"})
        sms = _read_until(primary, "login code is", timeout=10)
        line = next(ln for ln in sms.splitlines() if "login code is" in ln)
        assert line.startswith(f"SMS to {DEALER_PHONE}: Your packfleet login code is")

        # A second shell with no settings but the data dir: the running stack's database and secret.
        second = {**env, "PACKFLEET_DATA_DIR": str(data_dir)}
        run = functools.partial(
            subprocess.run, capture_output=True, text=True, timeout=60, env=second, cwd=tmp_path
        )
        added = run(
            [
                sys.executable,
                "-m",
                "packfleet",
                "user",
                "add",
                "--phone",
                "+919800000777",
                "--name",
                "Ops",
                "--role",
                "admin",
            ]
        )
        assert added.returncode == 0, added.stderr
        token = run([sys.executable, "-m", "packfleet", "token", "--phone", "+919800000777"])
        assert token.returncode == 0, token.stderr
        me = httpx.get(
            f"{api}/api/telemetry/latest", headers={"Authorization": f"Bearer {token.stdout.strip()}"}
        )
        assert me.status_code == 200 and len(me.json()) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        os.close(primary)
    log = (data_dir / "packfleet.log").read_text().splitlines()
    assert all(json.loads(x)["msg"] is not None for x in log) and any("migration" in x for x in log)
    alone = subprocess.run(
        [sys.executable, "-m", "packfleet", "token", "--phone", "+919800000777"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PACKFLEET_DATA_DIR": str(data_dir)},
    )
    assert alone.returncode == 2
    assert alone.stderr.strip().splitlines() == [
        f"error: no database: set PACKFLEET_DATABASE_URL, or start `packfleet up` (none runs from {data_dir})"
    ]
