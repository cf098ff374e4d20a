"""SMS providers behind one interface; `console` writes each message as one log line (development).

Real gateways (the messaging issue) implement `SmsProvider` and are chosen by `provider_for`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from packfleet.settings import Settings

log = logging.getLogger("packfleet.sms")


class SmsError(Exception):
    """The provider did not accept the message."""


class SmsProvider(Protocol):
    name: str

    async def send(self, *, to: str, text: str) -> str:
        """Hand the message over; return the provider's message id or raise SmsError."""
        ...


class ConsoleProvider:
    """Development provider: one log line per message with the recipient and the text."""

    name = "console"

    async def send(self, *, to: str, text: str) -> str:
        message_id = f"MSG{uuid.uuid4().hex[:16].upper()}"
        log.info("sms to %s: %s", to, text, extra={"to": to, "message_id": message_id, "provider": self.name})
        return message_id


def provider_for(settings: Settings) -> SmsProvider:
    """The provider the settings ask for (`sms_provider`, default `console`)."""
    name = getattr(settings, "sms_provider", "console")
    if name == "console":
        return ConsoleProvider()
    raise ValueError(f"unknown SMS provider {name!r}")
