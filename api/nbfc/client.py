"""The lender's API as the outbox worker calls it (httpx): one call per outbox row, with its key."""

from __future__ import annotations

import httpx
import psycopg
from pydantic import ValidationError

from packfleet.outbox import Outbox, PermanentError, Row
from packfleet.settings import Settings
from schemas.lender import IDEMPOTENCY_HEADER, LenderReceipt

TABLE = "nbfc_outbox"
RETRIED_STATUSES = (408, 425, 429)


class LenderUnavailable(Exception):
    """The lender did not answer, or answered that it could not take the call now."""


class LenderClient:
    """Posts an outbox row's body to its lender; returns the lender's reference for what it created.

    The address and the credentials are read when the row is sent, not when it was queued: the
    lender's `api_base_url` (from the database) or else `nbfc_api_url`, and `nbfc_api_key`, so a
    lender that moved, or a key that was rotated, while rows waited (an outage) is honoured. The
    row's `idempotency_key` goes with every attempt.
    """

    name = "lender-http"

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(timeout=settings.nbfc_timeout_s, transport=transport)

    async def url_of(self, row: Row) -> str:
        payload = row["payload"]
        if "path" not in payload:  # queued before addresses were resolved at send time
            return str(payload["url"])
        base = await self._lender_base_url(row["nbfc_id"]) or self._settings.nbfc_api_url
        if not base:
            raise LenderUnavailable(f"NBFC {row['nbfc_id']} has no API address (PACKFLEET_NBFC_API_URL)")
        return base.rstrip("/") + payload["path"]

    async def _lender_base_url(self, lender_id: int) -> str | None:
        try:
            async with await psycopg.AsyncConnection.connect(
                self._settings.require_database_url(), autocommit=True, connect_timeout=10
            ) as conn:
                cur = await conn.execute("SELECT api_base_url FROM nbfc_lenders WHERE id = %s", (lender_id,))
                found = await cur.fetchone()
        except psycopg.Error as exc:
            raise LenderUnavailable(f"lender address not read: {exc}") from None
        return None if found is None else found[0]

    async def send(self, row: Row) -> str | None:
        url = await self.url_of(row)
        headers = {IDEMPOTENCY_HEADER: row["idempotency_key"]}
        key = self._settings.nbfc_api_key
        if key is not None and key.get_secret_value():
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        try:
            answer = await self._http.post(url, json=row["payload"]["body"], headers=headers)
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
