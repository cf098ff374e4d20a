"""Send an SMS: record it in the outbox, hand it to the provider, record the outcome."""

from __future__ import annotations

import logging
import re
from typing import Any

from psycopg import AsyncConnection

from api.messaging import queries
from api.messaging.providers import SmsError, SmsProvider

log = logging.getLogger(__name__)


async def send_sms(
    conn: AsyncConnection,
    *,
    provider: SmsProvider,
    to: str,
    text: str,
    kind: str = "general",
    secret: bool = False,
) -> dict[str, Any]:
    """Send one message; the outbox row is committed before the provider is called, so none is lost.

    A `secret` message (a login code) is kept in the outbox with its digits masked, except by the
    development `console` provider, whose outbox is where a developer reads the code.
    """
    stored = re.sub(r"[0-9]", "X", text) if secret and provider.name != "console" else text
    async with conn.transaction():
        outbox_id = await queries.insert_message(conn, provider=provider.name, to=to, body=stored, kind=kind)
    try:
        provider_id = await provider.send(to=to, text=text)
    except SmsError as exc:
        log.warning("sms not sent", extra={"outbox_id": outbox_id, "error": str(exc)})
        async with conn.transaction():
            await queries.mark_failed(conn, outbox_id, error=str(exc))
        return {"id": outbox_id, "status": "failed", "message_id": None, "to": to}
    async with conn.transaction():
        await queries.mark_sent(conn, outbox_id, provider_message_id=provider_id)
    return {"id": outbox_id, "status": "sent", "message_id": provider_id, "to": to}
