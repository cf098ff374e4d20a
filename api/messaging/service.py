"""Queue an SMS in the caller's transaction; the outbox worker (api/messaging/jobs.py) sends it."""

from __future__ import annotations

import logging
import re
from datetime import datetime

from psycopg import AsyncConnection

from api.auth.models import E164
from api.messaging import queries
from packfleet.outbox import notify_workers

log = logging.getLogger(__name__)

_E164 = re.compile(E164)
MAX_TEXT = 1600  # ten concatenated SMS segments; gateways refuse longer


class InvalidPhone(ValueError):
    """Not an E.164 number (`+` and 7 to 15 digits, no leading zero)."""


def is_e164(phone: str) -> bool:
    return _E164.fullmatch(phone) is not None


async def queue_sms(
    conn: AsyncConnection,
    *,
    to: str,
    kind: str,
    text: str,
    dedupe_key: str | None,
    secret: bool = False,
    send_before: datetime | None = None,
    consumer_id: int | None = None,
    requested_by: int | None = None,
) -> int:
    """Queue one message and return its outbox id; it is sent once the caller's transaction commits.

    The same `dedupe_key` twice (namespace it: `"overdue_warning:instalment:42"`) stores one
    message and returns the first one's id, also when two transactions race. `secret` texts (codes)
    have their digits masked once delivered; a message not sent by `send_before` is given up.
    Raises InvalidPhone, or ValueError for an empty or over-long text, before touching the database,
    so the caller's transaction is unharmed and can go on.
    """
    if not is_e164(to):
        raise InvalidPhone(f"not an E.164 phone number: {to!r}")
    if not text.strip() or len(text) > MAX_TEXT:
        raise ValueError(f"an SMS text has 1 to {MAX_TEXT} characters")
    message_id = await queries.insert_message(
        conn,
        to=to,
        body=text,
        kind=kind,
        dedupe_key=dedupe_key,
        secret=secret,
        send_before=send_before,
        consumer_id=consumer_id,
        requested_by=requested_by,
    )
    if message_id is None:
        assert dedupe_key is not None
        existing = await queries.message_id_by_dedupe_key(conn, dedupe_key)
        assert existing is not None  # the conflicting row is committed (or ours)
        return existing
    await notify_workers(conn, queries.TABLE)
    return message_id
