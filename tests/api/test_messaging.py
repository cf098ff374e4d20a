"""SMS through the outbox: queue_sms, the worker with the console and HTTP providers (against a real
local HTTP gateway), crashes and races between processes, the templates."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.app import create_app
from api.messaging import templates
from api.messaging.jobs import sms_outbox
from api.messaging.providers import ConsoleProvider, HttpProvider, SmsError, SmsProvider, provider_for
from api.messaging.service import InvalidPhone, queue_sms
from packfleet import outbox, scheduler
from packfleet.db import open_pool
from tests import factories, services
from tests.api.conftest import World, api_settings, bearer
from tests.conftest import make_settings
from tests.sms_gateway import Gateway


@pytest.fixture(scope="module")
def own_url(admin_url: str) -> Iterator[str]:
    """A database for this module's workers alone: they deliver every queued SMS they find."""
    url = services.create_database(admin_url)
    yield url
    services.drop_database(admin_url, url)


@pytest.fixture
def own_db(own_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(own_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("DELETE FROM sms_outbox")
        yield conn


async def _queue(url: str, **kw: Any) -> int:
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        async with conn.transaction():
            return await queue_sms(conn, **{"kind": "general", "dedupe_key": None, **kw})


def _queue_sync(url: str, **kw: Any) -> int:
    return asyncio.run(_queue(url, **kw))


def _settle(url: str, provider: SmsProvider, **settings: Any) -> None:
    """Run the SMS outbox worker's passes until nothing is open."""
    box = sms_outbox(make_settings(url, outbox_retry_base_seconds=0.05, **settings), provider)

    async def run() -> None:
        async with open_pool(url, name="test-sms", max_size=4) as pool:
            for _ in range(200):
                await outbox.deliver_due(pool, box)
                async with pool.connection() as conn:
                    if (await outbox.queue_stats(conn, box))["depth"] == 0:
                        break
                await asyncio.sleep(0.05)
        await box.close()  # type: ignore[misc]

    asyncio.run(run())


def _http(gateway: Gateway, **kw: Any) -> HttpProvider:
    return HttpProvider(
        url=gateway.url,
        body_template='{"to": "{to}", "message": "{text}", "reference": "{idempotency_key}"}',
        auth_header="Authorization: Bearer gw-token",
        **kw,
    )


def _row(db: psycopg.Connection, message_id: int) -> dict[str, Any]:
    return db.execute("SELECT * FROM sms_outbox WHERE id = %s", (message_id,)).fetchone()


def test_queue_sms_validates_the_number_and_text_before_writing(
    database_url: str, db: psycopg.Connection
) -> None:
    for bad in ("9876543210", "+0123456789", "+91 98765 43210", "+9198765432101234"):
        with pytest.raises(InvalidPhone):
            _queue_sync(database_url, to=bad, text="hi", dedupe_key=f"bad:{bad}")
    with pytest.raises(ValueError, match="1 to 1600"):
        _queue_sync(database_url, to=factories.unique_phone(), text=" ", dedupe_key=None)
    assert (
        db.execute("SELECT count(*) AS n FROM sms_outbox WHERE dedupe_key LIKE 'bad:%'").fetchone()["n"] == 0
    )


def test_the_same_dedupe_key_twice_and_from_two_racing_transactions_stores_one_message(
    database_url: str, db: psycopg.Connection
) -> None:
    phone = factories.unique_phone()
    first = _queue_sync(database_url, to=phone, text="one", dedupe_key=f"t:{phone}")
    assert _queue_sync(database_url, to=phone, text="one", dedupe_key=f"t:{phone}") == first

    key = f"race:{phone}"

    async def race() -> tuple[int, int]:
        a = await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row)
        b = await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row)
        async with a, b:
            in_a = await queue_sms(a, to=phone, kind="general", text="race", dedupe_key=key)
            in_b = asyncio.create_task(queue_sms(b, to=phone, kind="general", text="race", dedupe_key=key))
            await asyncio.sleep(0.2)
            assert not in_b.done()  # waits on a's uncommitted row
            await a.commit()
            got = await in_b
            await b.commit()
            return in_a, got

    in_a, in_b = asyncio.run(race())
    assert in_a == in_b
    assert (
        db.execute("SELECT count(*) AS n FROM sms_outbox WHERE to_phone = %s", (phone,)).fetchone()["n"] == 2
    )


def test_console_logs_one_line_per_message_and_keeps_a_login_code_readable(
    own_url: str, own_db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    phone = factories.unique_phone()
    caplog.set_level(logging.INFO, logger="packfleet.sms")
    sms = templates.otp("123456", purpose="login", valid_minutes=5)
    message_id = _queue_sync(own_url, to=phone, kind=sms.kind, text=sms.text, dedupe_key=None, secret=True)
    _settle(own_url, ConsoleProvider())
    lines = [r.getMessage() for r in caplog.records if r.name == "packfleet.sms"]
    assert lines == [
        f"sms to {phone}: Your packfleet login code is 123456. It expires in 5 minutes. Do not share it."
    ]
    row = _row(own_db, message_id)
    assert (row["status"], row["provider"], row["body"]) == ("sent", "console", sms.text)
    assert row["provider_message_id"].startswith("MSG")


def test_a_gateway_that_fails_then_recovers_delivers_once_and_the_attempts_are_recorded(
    own_url: str, own_db: psycopg.Connection
) -> None:
    phone = factories.unique_phone()
    message_id = _queue_sync(own_url, to=phone, text="code 654321", dedupe_key=None, secret=True)
    with Gateway(fail_first=2).running() as gateway:
        _settle(own_url, _http(gateway))
    row = _row(own_db, message_id)
    assert (row["status"], row["attempts"], row["provider"], row["error"]) == ("sent", 3, "http", None)
    assert row["provider_message_id"] == gateway.delivered[row["idempotency_key"]] == "GW1"
    assert gateway.deliveries() == 1 and len(gateway.requests) == 3
    assert {r["key"] for r in gateway.requests} == {row["idempotency_key"]}
    last = gateway.requests[-1]
    assert last["headers"]["Authorization"] == "Bearer gw-token"
    assert last["body"] == {"to": phone, "message": "code 654321", "reference": row["idempotency_key"]}
    assert row["body"] == "code XXXXXX"  # a real provider's secret is masked once sent


def test_a_rejected_message_fails_at_once(own_url: str, own_db: psycopg.Connection) -> None:
    message_id = _queue_sync(own_url, to=factories.unique_phone(), text="hello", dedupe_key=None)
    with Gateway(reject=True).running() as gateway:
        _settle(own_url, _http(gateway))
    row = _row(own_db, message_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["error"].startswith("rejected: HTTP 400")
    assert len(gateway.requests) == 1


def _worker(url: str, gateway: Gateway, name: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.outbox_worker", url, gateway.url, "--name", name, *args],
        cwd=services.REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PACKFLEET_LOG_LEVEL": "WARNING"},
    )


def test_two_worker_processes_at_once_deliver_every_message_once(
    own_url: str, own_db: psycopg.Connection
) -> None:
    ids = [
        _queue_sync(own_url, to=factories.unique_phone(), text=f"m{i}", dedupe_key=None) for i in range(30)
    ]
    with Gateway(delay_s=0.02).running() as gateway:
        start_at = f"{time.time() + 2.0:.3f}"
        workers = [
            _worker(own_url, gateway, f"w{i}", "--start-at", start_at, "--until-empty") for i in (1, 2)
        ]
        for proc in workers:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    rows = own_db.execute("SELECT * FROM sms_outbox WHERE id = ANY(%s)", (ids,)).fetchall()
    assert {r["status"] for r in rows} == {"sent"} and {r["attempts"] for r in rows} == {1}
    assert len(gateway.requests) == gateway.deliveries() == 30
    assert {r["provider"] for r in rows} == {"w1", "w2"}  # both took part


def test_a_worker_killed_mid_send_is_followed_by_a_resend_with_the_same_key_and_one_delivery(
    own_url: str, own_db: psycopg.Connection
) -> None:
    message_id = _queue_sync(own_url, to=factories.unique_phone(), text="once only", dedupe_key=None)
    with Gateway(hold_first=True).running() as gateway:
        proc = _worker(own_url, gateway, "doomed", "--lease", "3")
        assert gateway.received.wait(30), "the worker never sent"
        proc.send_signal(signal.SIGKILL)  # delivered at the gateway, the answer never heard
        proc.wait(10)
        gateway.release.set()
        row = _row(own_db, message_id)
        assert (row["status"], row["attempts"], row["provider_message_id"]) == ("sending", 1, None)
        _settle(own_url, _http(gateway), outbox_lease_seconds=3)  # passes until the lease ends
    row = _row(own_db, message_id)
    assert (row["status"], row["attempts"], row["provider_message_id"]) == ("sent", 2, "GW1")
    assert [r["key"] for r in gateway.requests] == [row["idempotency_key"]] * 2
    assert gateway.deliveries() == 1


def test_the_http_provider_sends_forms_reads_nested_ids_and_times_out() -> None:
    async def scenario(gateway: Gateway) -> None:
        provider = HttpProvider(
            url=gateway.url,
            body_template='{"To": "{to}", "Body": "{text}"}',
            body_format="form",
            message_id_path="status",
            idempotency_header="X-Key",
        )
        assert await provider.send(to="+919800000001", text="a {b} & c", idempotency_key="k1") == "accepted"
        await provider.aclose()
        slow = HttpProvider(url=gateway.url, body_template="{}", timeout_s=0.1)
        gateway.delay_s = 0.5
        with pytest.raises(SmsError, match="Timeout"):
            await slow.send(to="+919800000001", text="x", idempotency_key="k2")
        await slow.aclose()

    with Gateway().running() as gateway:
        asyncio.run(scenario(gateway))
    first = gateway.requests[0]
    assert first["headers"]["X-Key"] == "k1" and first["body"] == "To=%2B919800000001&Body=a+%7Bb%7D+%26+c"


def test_misconfigured_providers_fail_at_start_up(database_url: str) -> None:
    with pytest.raises(ValueError, match="needs PACKFLEET_SMS_HTTP_URL"):
        provider_for(make_settings(database_url, sms_provider="http"))
    for bad, match in (("[]", "JSON object"), ("{", "not JSON")):
        with pytest.raises(ValueError, match=match):
            HttpProvider(url="https://gw.example/send", body_template=bad)
    with pytest.raises(ValueError, match="Name: value"):
        HttpProvider(url="https://gw.example/send", body_template="{}", auth_header="token")


def test_templates_carry_the_fields_in_the_gsm_alphabet() -> None:
    warning = templates.overdue_warning(
        consumer_name="Asha",
        battery_serial="BAT001",
        amount_due=Decimal("123456.5"),
        due_date=date(2025, 3, 5),
        days_until_disable=3,
    )
    assert warning.kind == "overdue_warning"
    assert warning.text == (
        "Dear Asha, your EMI of Rs. 1,23,456.50 due on 05 Mar 2025 is unpaid. "
        "Please pay to avoid charging of battery BAT001 being disabled in 3 days."
    )
    disabled = templates.battery_disabled(
        consumer_name="Asha", battery_serial="BAT001", amount_due=Decimal("2128.83"), charging_only=False
    )
    assert "Battery BAT001 has been disabled" in disabled.text and "Rs. 2,128.83" in disabled.text
    enabled = templates.battery_enabled(consumer_name="Asha", battery_serial="BAT001")
    assert enabled.kind == "battery_enabled" and "BAT001 is enabled again" in enabled.text
    assert [templates.rupees(Decimal(v)) for v in ("0", "999.999", "100000", "12345678.9", "-1500")] == [
        "Rs. 0.00",
        "Rs. 1,000.00",
        "Rs. 1,00,000.00",
        "Rs. 1,23,45,678.90",
        "Rs. -1,500.00",
    ]
    gsm = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    gsm |= set("ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
    for sms in (warning, disabled, enabled, templates.otp("123456", valid_minutes=5)):
        assert set(sms.text) <= gsm and len(sms.text) <= 160, sms.text


@contextmanager
def _worker_thread(url: str, provider: SmsProvider) -> Iterator[None]:
    """The SMS outbox worker, running beside the API under test as the scheduler process runs it."""
    box = sms_outbox(make_settings(url), provider)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    async def run() -> None:
        async with open_pool(url, name="test-sms-worker", max_size=4) as pool:
            started.set()
            await outbox.run_workers(pool, url, [box], stop, poll_s=1.0)

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@pytest.fixture
def own_world(own_db: psycopg.Connection) -> World:
    return World(own_db)


@pytest.fixture
def own_client(own_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings(own_url, tmp_path))) as client:
        yield client


def test_send_sms_answers_sent_with_the_providers_id_and_a_repeated_key_sends_nothing(
    own_client: TestClient, own_world: World
) -> None:
    w, phone = own_world, own_world.consumer_a["phone"]
    headers = {**bearer(w.dealer_a_user), "Idempotency-Key": "order-42"}
    with (
        Gateway().running() as gateway,
        _worker_thread(own_client.app.state.settings.database_url, _http(gateway)),
    ):  # type: ignore[attr-defined]
        first = own_client.post(
            "/api/messaging/send-sms", json={"to": phone, "message": "Hello"}, headers=headers
        )
        again = own_client.post(
            "/api/messaging/send-sms", json={"to": phone, "message": "Hello"}, headers=headers
        )
        other = own_client.post(
            "/api/messaging/send-sms", json={"to": phone, "message": "Bye"}, headers=headers
        )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body == {
        "success": True,
        "message_id": "GW1",
        "status": "sent",
        "to": phone,
        "outbox_id": body["outbox_id"],
        "error": None,
    }
    assert again.json() == body and gateway.deliveries() == 1
    assert other.status_code == 409 and other.json()["code"] == "CONFLICT"
    row = own_world.conn.execute("SELECT * FROM sms_outbox WHERE id = %s", (body["outbox_id"],)).fetchone()
    assert (row["consumer_id"], row["requested_by"], row["kind"]) == (
        w.consumer_a["id"],
        w.dealer_a_user["id"],
        "general",
    )


def test_without_a_worker_the_answer_says_queued_and_a_rejection_says_failed(
    own_client: TestClient, own_world: World
) -> None:
    w = own_world
    sent = own_client.post(
        "/api/messaging/send-otp?wait=0.2",
        json={"to": w.consumer_a["phone"], "otp": "4321"},
        headers=bearer(w.admin),
    )
    assert sent.status_code == 200, sent.text
    assert (sent.json()["status"], sent.json()["message_id"], sent.json()["success"]) == (
        "queued",
        None,
        True,
    )
    with (
        Gateway(reject=True).running() as gateway,
        _worker_thread(own_client.app.state.settings.database_url, _http(gateway)),
    ):  # type: ignore[attr-defined]
        refused = own_client.post(
            "/api/messaging/battery-status",
            json={
                "battery_id": w.battery_a["id"],
                "consumer_phone": w.consumer_a["phone"],
                "status": "maintenance",
            },
            headers=bearer(w.dealer_a_user),
        ).json()
    assert (refused["success"], refused["status"], refused["notification_type"]) == (
        False,
        "failed",
        "battery_status",
    )
    assert refused["error"].startswith("rejected: HTTP 400")
    texts = [r["body"]["message"] for r in gateway.requests]
    assert f"Your battery {w.battery_a['serial_number']} is now under maintenance." in texts
    otp_row = w.conn.execute(
        "SELECT body, status FROM sms_outbox WHERE id = %s", (sent.json()["outbox_id"],)
    ).fetchone()
    assert otp_row == {
        "body": "Your packfleet verification code is XXXX. Do not share it.",
        "status": "failed",
    }


def test_a_dealer_texts_only_its_own_consumers_and_bad_input_is_400(
    own_client: TestClient, own_world: World
) -> None:
    w, headers = own_world, bearer(own_world.dealer_a_user)
    stranger = own_client.post(
        "/api/messaging/send-sms?wait=0",
        json={"to": factories.unique_phone(), "message": "hi"},
        headers=headers,
    )
    assert stranger.status_code == 404 and stranger.json()["error"] == "Consumer not found"
    not_theirs = own_client.post(
        "/api/messaging/battery-status?wait=0",
        json={"battery_id": w.battery_a["id"], "consumer_phone": w.consumer_b["phone"], "status": "active"},
        headers=headers,
    )
    assert not_theirs.status_code == 404
    for path, body, field in (
        ("send-sms", {"to": "9876543210", "message": "hi"}, "to"),
        ("send-sms", {"to": w.consumer_a["phone"], "message": "   "}, "message"),
        ("send-sms", {"to": w.consumer_a["phone"], "message": "x" * 1601}, "message"),
        ("send-otp", {"to": w.consumer_a["phone"], "otp": "12ab56"}, "otp"),
        (
            "battery-status",
            {"battery_id": 0, "consumer_phone": w.consumer_a["phone"], "status": "active"},
            "battery_id",
        ),
        (
            "battery-status",
            {"battery_id": 2**63, "consumer_phone": w.consumer_a["phone"], "status": "x"},
            "battery_id",
        ),
    ):
        answer = own_client.post(f"/api/messaging/{path}?wait=0", json=body, headers=headers)
        assert answer.status_code == 400, (path, body, answer.text)
        assert field in {d["field"] for d in answer.json()["details"]}
    for wait in ("nan", "-1", "11", "1e308"):
        answer = own_client.post(
            f"/api/messaging/send-sms?wait={wait}",
            json={"to": w.consumer_a["phone"], "message": "hi"},
            headers=headers,
        )
        assert answer.status_code == 400, (wait, answer.text)
    assert w.conn.execute("SELECT count(*) AS n FROM sms_outbox").fetchone()["n"] == 0


def test_a_login_code_goes_through_the_outbox_and_is_masked_once_sent(
    own_client: TestClient, own_world: World
) -> None:
    phone = own_world.dealer_a_user["phone"]
    with (
        Gateway().running() as gateway,
        _worker_thread(own_client.app.state.settings.database_url, _http(gateway)),
    ):  # type: ignore[attr-defined]
        assert (
            own_client.post("/api/auth/login", json={"phone": phone, "userType": "dealer"}).status_code == 200
        )
        services.wait_for(lambda: gateway.requests, timeout=10)
    text = gateway.requests[0]["body"]["message"]
    code = next(word.rstrip(".") for word in text.split() if word.rstrip(".").isdigit())
    row = own_world.conn.execute("SELECT * FROM sms_outbox WHERE to_phone = %s", (phone,)).fetchone()
    services.wait_for(
        lambda: (
            own_world.conn.execute("SELECT status FROM sms_outbox WHERE id = %s", (row["id"],)).fetchone()[
                "status"
            ]
            == "sent"
        )
    )
    row = own_world.conn.execute("SELECT * FROM sms_outbox WHERE id = %s", (row["id"],)).fetchone()
    assert row["body"] == re.sub("[0-9]", "X", text) and row["kind"] == "otp"  # every digit: no guessing
    expires = own_world.conn.execute("SELECT expires_at FROM otp_codes WHERE phone = %s", (phone,)).fetchone()
    assert row["send_before"] == expires["expires_at"]  # a code is never sent after it died
    verified = own_client.post("/api/auth/verify-otp", json={"phone": phone, "otp": code})
    assert verified.status_code == 200, verified.text


def test_the_scheduler_process_runs_the_sms_worker(own_url: str, own_db: psycopg.Connection) -> None:
    message_id = _queue_sync(own_url, to=factories.unique_phone(), text="from the scheduler", dedupe_key=None)
    sent_before = outbox.OUTCOMES.labels("sms_outbox", "sent")._value.get()

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(make_settings(own_url), stop, jobs=[]))
        for _ in range(200):
            if (
                own_db.execute("SELECT status FROM sms_outbox WHERE id = %s", (message_id,)).fetchone()[
                    "status"
                ]
                == "sent"
            ):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the pass's gauges
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(run())
    assert _row(own_db, message_id)["provider"] == "console"
    assert outbox.OUTCOMES.labels("sms_outbox", "sent")._value.get() == sent_before + 1
    assert outbox.DEPTH.labels("sms_outbox")._value.get() == 0
