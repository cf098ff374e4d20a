"""The lender's API as the outbox worker calls it (httpx): one call per outbox row, with its key."""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from packfleet.outbox import Outbox, PermanentError, Row
from packfleet.settings import Settings
from schemas.lender import IDEMPOTENCY_HEADER, LenderReceipt

TABLE = "nbfc_outbox"
RETRIED_STATUSES = (408, 425, 429)


class LenderUnavailable(Exception):
    """The lender did not answer, or answered that it could not take the call now."""


class LenderClient:
    """Posts an outbox row's body to its URL; returns the lender's reference for what it created."""

    name = "lender-http"

    def __init__(self, settings: Settings) -> None:
        self._api_key = None if settings.nbfc_api_key is None else settings.nbfc_api_key.get_secret_value()
        self._http = httpx.AsyncClient(timeout=settings.nbfc_timeout_s)

    async def send(self, row: Row) -> str | None:
        headers = {IDEMPOTENCY_HEADER: row["idempotency_key"]}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        payload = row["payload"]
        try:
            answer = await self._http.post(payload["url"], json=payload["body"], headers=headers)
        except httpx.HTTPError as exc:
            raise LenderUnavailable(f"{type(exc).__name__}: {exc}") from None
        if answer.is_success:
            try:
                return LenderReceipt.model_validate_json(answer.content).reference
            except ValidationError:
                # Accepted, but we cannot read its reference: ask again (the key makes it the same call).
                raise LenderUnavailable(f"unreadable answer: {answer.text[:200]}") from None
        if answer.status_code >= 500 or answer.status_code in RETRIED_STATUSES:
            raise LenderUnavailable(f"HTTP {answer.status_code}")
        raise PermanentError(f"HTTP {answer.status_code}: {answer.text[:300]}")

    async def aclose(self) -> None:
        await self._http.aclose()


def nbfc_outbox(settings: Settings, client: LenderClient | None = None) -> Outbox:
    """`nbfc_outbox` delivered to the lenders' APIs."""
    chosen = client or LenderClient(settings)
    return Outbox.configured(
        settings, table=TABLE, sender=chosen.send, sender_name=chosen.name, close=chosen.aclose
    )
