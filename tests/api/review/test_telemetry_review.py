"""Reviewer reproductions (telemetry)."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from tests import factories
from tests.api.conftest import bearer


def test_full_disable_pending_over_a_charging_cut_reads_as_done(client: TestClient, db: psycopg.Connection) -> None:
    """Reported (False, charging) = charging off, discharging ON (schemas/state.py); desired
    (False, both). The battery API says status active / in_sync false; telemetry says
    enabled=false, desired_enabled=false: the dashboard and Grafana count it disabled and in sync."""
    dealer = factories.dealer(db)
    user = factories.user(db, "dealer", dealer_id=dealer["id"])
    b = factories.battery(db, dealer_id=dealer["id"])
    db.execute(
        "INSERT INTO battery_latest (battery_id, ts, voltage, current, soc, lat, lon) "
        "VALUES (%s, now(), 48, 20, 55, 12.97, 77.59)", (b["id"],))
    db.execute(
        """UPDATE batteries SET desired_enabled = false, desired_spec = 'both', desired_status = 'inactive',
                  reported_enabled = false, reported_spec = 'charging', status = 'active', online = true
           WHERE id = %s""",
        (b["id"],),
    )
    detail = client.get(f"/api/batteries/{b['serial_number']}", headers=bearer(user)).json()
    latest = {r["serial_number"]: r for r in client.get("/api/telemetry/latest", headers=bearer(user)).json()}
    row = latest[b["serial_number"]]
    print("battery:", detail.get("status"), detail.get("control"))
    print("telemetry:", {k: row[k] for k in ("status", "enabled", "desired_enabled")})
    # the dashboard's attention rule (app.js:97) and Grafana's awaiting_device compare these two flags
    assert row["enabled"] != row["desired_enabled"] or detail["control"]["in_sync"], (
        "telemetry/dashboard: disabled and in sync; battery API: discharging on, not in sync"
    )


def test_unread_csv_downloads_hold_the_pool(db: psycopg.Connection, database_url: str, tmp_path) -> None:
    """Each CSV export holds a pool connection (and a transaction) until the client has read it all;
    as many stalled downloads as the pool has connections stop every other request."""
    import socket
    import threading
    import time
    from datetime import UTC, datetime, timedelta

    import httpx
    import uvicorn

    from api.app import create_app
    from tests.api.conftest import api_settings
    from tests.api.telemetry.conftest import series, store
    from tests.services import free_port, wait_for_port

    dealer = factories.dealer(db)
    user = factories.user(db, "dealer", dealer_id=dealer["id"])
    b = factories.battery(db, dealer_id=dealer["id"])
    start = datetime.now(UTC) - timedelta(hours=23)
    with db.transaction():
        store(db, series(b["id"], start, 80_000, step=timedelta(seconds=1)))
    port = free_port()
    settings = api_settings(database_url, tmp_path / "docs", db_pool_max=2)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    token = bearer(user)["Authorization"]
    stalled = []
    for _ in range(2):  # a client that asks for the CSV and reads nothing
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(
            f"GET /api/telemetry/{b['serial_number']}?format=csv HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {token}\r\n\r\n".encode()
        )
        stalled.append(s)
    time.sleep(3)
    t0 = time.monotonic()
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/api/telemetry/latest", headers={"Authorization": token},
                           timeout=45)
        outcome = answer.status_code
    except httpx.HTTPError as exc:
        outcome = repr(exc)
    took = time.monotonic() - t0
    active = db.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'packfleet-api' "
        "AND state LIKE 'idle in transaction%%'"
    ).fetchone()["n"]
    print("other request:", outcome, f"after {took:.1f}s;", "api connections idle in transaction:", active)
    for s in stalled:
        s.close()
    server.should_exit = True
    thread.join(timeout=10)
    assert took < 5
