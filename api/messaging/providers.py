"""SMS providers behind one interface, chosen by `PACKFLEET_SMS_PROVIDER`.

    SmsError         the provider did not take the message this time: the outbox retries
    └── SmsRejected  the provider refused it for good (a 4xx): failed at once, no retry

`console` (development) writes each message as one log line; `http` posts to any gateway with a
URL, an auth header and a body template from the settings. Both are given the outbox row's
idempotency key, so that a re-send of the same row is recognised (an HTTP gateway that honours
the key header delivers it once; the console's message id is derived from the key).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Protocol

import httpx

from packfleet.outbox import PermanentError
from packfleet.settings import Settings

log = logging.getLogger("packfleet.sms")

PLACEHOLDERS = ("to", "text", "idempotency_key")


class SmsError(Exception):
    """The provider did not accept the message (this time)."""


class SmsRejected(SmsError, PermanentError):
    """The provider refused the message; sending it again would be refused again."""


class SmsProvider(Protocol):
    name: str

    async def send(self, *, to: str, text: str, idempotency_key: str) -> str | None:
        """Hand the message over; return the provider's message id or raise SmsError."""
        ...

    async def aclose(self) -> None: ...


class ConsoleProvider:
    """Development provider: one log line per message with the recipient and the text."""

    name = "console"

    async def send(self, *, to: str, text: str, idempotency_key: str) -> str:
        message_id = "MSG" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16].upper()
        log.info("sms to %s: %s", to, text, extra={"to": to, "message_id": message_id, "provider": self.name})
        return message_id

    async def aclose(self) -> None:
        pass


class HttpProvider:
    """A gateway reached by one HTTP POST per message; its answer's JSON holds the message id.

    2xx is accepted; 408, 425, 429, 5xx, timeouts and connection errors are retried; any other
    4xx is a rejection. The idempotency key goes in `idempotency_header` (and in the body where the
    template says `{idempotency_key}`).
    """

    name = "http"

    def __init__(
        self,
        *,
        url: str,
        body_template: str,
        body_format: str = "json",
        auth_header: str | None = None,
        message_id_path: str = "message_id",
        idempotency_header: str | None = "Idempotency-Key",
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"SMS gateway URL must be http(s)://, got {url!r}")
        try:
            template = json.loads(body_template)
        except json.JSONDecodeError as exc:
            raise ValueError(f"PACKFLEET_SMS_HTTP_BODY_TEMPLATE is not JSON: {exc}") from None
        if not isinstance(template, dict):
            raise ValueError("PACKFLEET_SMS_HTTP_BODY_TEMPLATE must be a JSON object")
        if body_format == "form" and not all(isinstance(v, str) for v in template.values()):
            raise ValueError("a form body template maps names to strings")
        headers = {}
        if auth_header:
            header, sep, value = auth_header.partition(":")
            if not sep or not header.strip() or not value.strip():
                raise ValueError("PACKFLEET_SMS_HTTP_AUTH_HEADER must read 'Name: value'")
            headers[header.strip()] = value.strip()
        self._url = url
        self._template = template
        self._form = body_format == "form"
        self._id_path = message_id_path.split(".")
        self._key_header = idempotency_header
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout_s), transport=transport, follow_redirects=False
        )

    async def send(self, *, to: str, text: str, idempotency_key: str) -> str | None:
        values = {"to": to, "text": text, "idempotency_key": idempotency_key}
        body = _fill(self._template, values)
        headers = {self._key_header: idempotency_key} if self._key_header else {}
        try:
            if self._form:
                answer = await self._client.post(self._url, data=body, headers=headers)
            else:
                answer = await self._client.post(self._url, json=body, headers=headers)
        except httpx.HTTPError as exc:  # timeouts, refused connections, broken answers
            raise SmsError(f"{type(exc).__name__}: {exc}") from exc
        status = answer.status_code
        if status in (408, 425, 429) or status >= 500 or 300 <= status < 400:
            raise SmsError(f"HTTP {status}: {answer.text[:200]}")
        if status >= 400:
            raise SmsRejected(f"HTTP {status}: {answer.text[:200]}")
        message_id = self._message_id(answer)
        if message_id is None:
            log.warning("SMS gateway accepted a message without an id at %s", ".".join(self._id_path))
        return message_id

    def _message_id(self, answer: httpx.Response) -> str | None:
        try:
            found: Any = answer.json()
        except ValueError:
            return None
        for part in self._id_path:
            found = found.get(part) if isinstance(found, dict) else None
        return None if found is None or isinstance(found, (dict, list)) else str(found)

    async def aclose(self) -> None:
        await self._client.aclose()


def _fill(template: Any, values: dict[str, str]) -> Any:
    """The template with `{name}` replaced in its strings (plain replacement: braces in a
    message's text are kept as they are)."""
    if isinstance(template, str):
        for name in PLACEHOLDERS:
            template = template.replace("{" + name + "}", values[name])
        return template
    if isinstance(template, dict):
        return {key: _fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, values) for value in template]
    return template


def provider_for(settings: Settings) -> SmsProvider:
    """The provider the settings ask for; a misconfigured one fails here, at start-up."""
    if settings.sms_provider == "console":
        return ConsoleProvider()
    if not settings.sms_http_url:
        raise ValueError("PACKFLEET_SMS_PROVIDER=http needs PACKFLEET_SMS_HTTP_URL")
    auth = settings.sms_http_auth_header
    return HttpProvider(
        url=settings.sms_http_url,
        body_template=settings.sms_http_body_template,
        body_format=settings.sms_http_body_format,
        auth_header=None if auth is None else auth.get_secret_value(),
        message_id_path=settings.sms_http_message_id_path,
        idempotency_header=settings.sms_http_idempotency_header or None,
        timeout_s=settings.sms_http_timeout_seconds,
    )
