"""The SMS outbox's worker, declared for the business scheduler process (packfleet/scheduler.py)."""

from __future__ import annotations

from api.messaging.providers import SmsProvider, provider_for
from api.messaging.queries import TABLE
from packfleet.outbox import Outbox, Row
from packfleet.settings import Settings


def sms_outbox(settings: Settings, provider: SmsProvider | None = None) -> Outbox:
    """`sms_outbox` delivered through the configured provider (or the one given)."""
    chosen = provider or provider_for(settings)

    async def send(row: Row) -> str | None:
        return await chosen.send(to=row["to_phone"], text=row["body"], idempotency_key=row["idempotency_key"])

    return Outbox.configured(settings, table=TABLE, sender=send, sender_name=chosen.name, close=chosen.aclose)


def outboxes(settings: Settings) -> list[Outbox]:
    return [sms_outbox(settings)]
