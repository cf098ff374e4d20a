"""The SMS outbox: every message recorded; login codes kept readable only by the console provider."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from api.messaging.providers import ConsoleProvider
from api.messaging.service import send_sms
from tests import factories


class _Gateway:
    """A provider other than console (what the messaging issue plugs in), recording what it was given."""

    name = "gateway"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, *, to: str, text: str) -> str:
        self.sent.append((to, text))
        return "GW-1"


async def _send(url: str, provider, **kw):  # type: ignore[no-untyped-def]
    async with await psycopg.AsyncConnection.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return await send_sms(conn, provider=provider, **kw)


def test_console_logs_one_line_and_keeps_the_text(database_url: str, db: psycopg.Connection, caplog) -> None:  # type: ignore[no-untyped-def]
    phone = factories.unique_phone()
    caplog.set_level(logging.INFO, logger="packfleet.sms")
    sent = asyncio.run(
        _send(database_url, ConsoleProvider(), to=phone, text="code 123456", kind="otp", secret=True)
    )
    assert sent["status"] == "sent" and sent["message_id"].startswith("MSG")
    lines = [r.getMessage() for r in caplog.records if r.name == "packfleet.sms"]
    assert lines == [f"sms to {phone}: code 123456"]
    row = db.execute("SELECT * FROM sms_outbox WHERE to_phone = %s", (phone,)).fetchone()
    assert (row["body"], row["status"], row["provider"], row["provider_message_id"]) == (
        "code 123456",
        "sent",
        "console",
        sent["message_id"],
    )


def test_real_providers_get_the_code_but_the_outbox_keeps_it_masked(
    database_url: str, db: psycopg.Connection
) -> None:
    phone, gateway = factories.unique_phone(), _Gateway()
    asyncio.run(_send(database_url, gateway, to=phone, text="code 123456", kind="otp", secret=True))
    assert gateway.sent == [(phone, "code 123456")]
    assert (
        db.execute("SELECT body FROM sms_outbox WHERE to_phone = %s", (phone,)).fetchone()["body"]
        == "code XXXXXX"
    )
