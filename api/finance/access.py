"""Who sees which finance rows: a dealer its own, a consumer their own, an NBFC what was sent to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from api.auth.tokens import Principal
from api.errors import Forbidden

NO_LENDER = 0  # an NBFC user tied to no lender sees nothing (ids start at 1)


@dataclass(frozen=True)
class Scope:
    """Filters every finance query applies; None means no filter on that column."""

    dealer_id: int | None = None
    consumer_id: int | None = None
    nbfc_id: int | None = None

    def params(self) -> dict[str, Any]:
        return {"dealer": self.dealer_id, "consumer": self.consumer_id, "nbfc": self.nbfc_id}


def scope_sql(alias: str) -> str:
    """The WHERE condition of a Scope on a table with dealer_id, consumer_id and nbfc_id."""
    return (
        f"(%(dealer)s::bigint IS NULL OR {alias}.dealer_id = %(dealer)s)"
        f" AND (%(consumer)s::bigint IS NULL OR {alias}.consumer_id = %(consumer)s)"
        f" AND (%(nbfc)s::bigint IS NULL OR {alias}.nbfc_id = %(nbfc)s)"
    )


async def lender_of(conn: AsyncConnection, principal: Principal) -> int:
    """The lender an NBFC user acts for (read per request, so a reassignment applies at once)."""
    cur = await conn.execute("SELECT nbfc_id FROM users WHERE id = %s", (principal.user_id,))
    row = await cur.fetchone()
    return row["nbfc_id"] if row and row["nbfc_id"] is not None else NO_LENDER


async def scope_for(conn: AsyncConnection, principal: Principal, *roles: str) -> Scope:
    """The caller's scope, if their role is one of `roles` (403 otherwise)."""
    if principal.role not in roles:
        raise Forbidden("Insufficient permissions for this operation")
    if principal.role == "dealer":
        return Scope(dealer_id=principal.dealer_id)
    if principal.role == "consumer":
        return Scope(consumer_id=principal.consumer_id)
    if principal.role == "nbfc":
        return Scope(nbfc_id=await lender_of(conn, principal))
    if principal.role == "admin":
        return Scope()
    raise Forbidden("Insufficient permissions for this operation")


def within(scope: Scope, row: dict[str, Any]) -> bool:
    """Whether a row (with dealer_id, consumer_id, nbfc_id) is inside the scope."""
    return all(
        want is None or row.get(column) == want
        for column, want in (
            ("dealer_id", scope.dealer_id),
            ("consumer_id", scope.consumer_id),
            ("nbfc_id", scope.nbfc_id),
        )
    )
