"""The operator commands: migrate, seed-demo, user add, token, and `api` with several workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import psycopg

from api.auth.tokens import verify_token
from tests import factories
from tests.conftest import JWT_SECRET, token_for
from tests.factories import unique_phone
from tests.services import free_port, wait_for


def packfleet(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PACKFLEET_DATABASE_URL": database_url,
        "PACKFLEET_JWT_SECRET": JWT_SECRET,
        "PACKFLEET_LOG_JSON": "false",
    }
    return subprocess.run(
        [sys.executable, "-m", "packfleet", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_migrate_reports_up_to_date(database_url: str) -> None:
    result = packfleet(database_url, "migrate")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_dealer_user_gets_own_dealer_and_token_verifies(database_url: str) -> None:
    phone = unique_phone()
    added = packfleet(database_url, "user", "add", "--phone", phone, "--name", "Asha EV", "--role", "dealer")
    assert added.returncode == 0, added.stderr
    with psycopg.connect(database_url) as conn:
        dealer_id, dealer_name = conn.execute(
            "SELECT d.id, d.name FROM users u JOIN dealers d ON d.id = u.dealer_id WHERE u.phone = %s",
            (phone,),
        ).fetchone()
    assert dealer_name == "Asha EV"

    issued = packfleet(database_url, "token", "--phone", phone)
    assert issued.returncode == 0, issued.stderr
    principal = verify_token(issued.stdout.strip(), secret=JWT_SECRET)
    assert (principal.role, principal.dealer_id) == ("dealer", dealer_id)


def test_user_add_refuses_bad_input_and_duplicates(database_url: str) -> None:
    bad_phone = packfleet(database_url, "user", "add", "--phone", "98765", "--name", "X", "--role", "admin")
    assert bad_phone.returncode == 2 and "E.164" in bad_phone.stderr
    bad_role = packfleet(
        database_url, "user", "add", "--phone", unique_phone(), "--name", "X", "--role", "boss"
    )
    assert bad_role.returncode == 2 and "role" in bad_role.stderr
    phone = unique_phone()
    assert (
        packfleet(database_url, "user", "add", "--phone", phone, "--name", "A", "--role", "admin").returncode
        == 0
    )
    again = packfleet(database_url, "user", "add", "--phone", phone, "--name", "A", "--role", "admin")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_token_for_unknown_phone_fails(database_url: str) -> None:
    result = packfleet(database_url, "token", "--phone", "+919999999999")
    assert result.returncode == 2 and "no active user" in result.stderr


def test_seed_demo_is_idempotent(fresh_database_url: str) -> None:
    for _ in range(2):
        result = packfleet(fresh_database_url, "seed-demo", "--batteries", "5")
        assert result.returncode == 0, result.stderr
    with psycopg.connect(fresh_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM batteries").fetchone()[0] == 5
        assert conn.execute("SELECT count(*) FROM dealers").fetchone()[0] == 1


def test_api_with_two_worker_processes(database_url: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PACKFLEET_DATABASE_URL": database_url,
        "PACKFLEET_JWT_SECRET": JWT_SECRET,
        "PACKFLEET_LOG_JSON": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "packfleet", "api", "--port", str(port), "--workers", "2"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(healthy, timeout=30)
        workers = wait_for(lambda: len(psutil.Process(server.pid).children()) >= 2 or None, timeout=10)
        assert workers
        with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
            admin = factories.user(conn, "admin")
            battery = factories.battery(conn)
        headers = {"Authorization": f"Bearer {token_for(admin)}"}
        for _ in range(20):  # new connections: the kernel hands them to either worker
            answer = httpx.get(f"{base}/api/batteries/{battery['serial_number']}", headers=headers, timeout=5)
            assert (
                answer.status_code == 200
                and answer.json()["battery"]["serial_number"] == battery["serial_number"]
            )
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr[-2000:]
    assert "PACKFLEET_REDIS_URL" in stderr  # told that each process counts rate limits alone


def test_a_missing_or_bad_setting_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKFLEET_")}
    env["PACKFLEET_DATA_DIR"] = str(tmp_path)  # no `packfleet up` runs from there

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "packfleet", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    cases = [
        (
            run("api", PACKFLEET_DATABASE_URL="postgresql://x@127.0.0.1:1/x"),
            "PACKFLEET_JWT_SECRET is not set",
        ),
        (run("user", "add", "--phone", "+919800000999", "--name", "X", "--role", "admin"), "no database"),
        (run("migrate", PACKFLEET_API_PORT="eighty"), "PACKFLEET_API_PORT"),
        (
            run(
                "token",
                "--phone",
                "+919800000999",
                PACKFLEET_DATABASE_URL="postgresql://x@127.0.0.1:1/x",
                PACKFLEET_JWT_SECRET="a-real-secret-of-some-length",
            ),
            "cannot reach the database",
        ),
    ]
    for result, says in cases:
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and says in lines[0], result.stderr
        assert lines[0].startswith("error: ")
