"""SQL for consumers and their documents. Functions take `conn` first and never commit."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

CONSUMER_COLUMNS = "c.id, c.dealer_id, c.name, c.phone, c.pan, c.aadhaar_last4, c.kyc_status, c.created_at"
DOCUMENT_COLUMNS = """id, consumer_id, document_type, document_number_enc, document_url, sha256, content_type,
    size_bytes, original_name, status, uploaded_by, uploaded_at"""


async def list_consumers(
    conn: AsyncConnection, *, dealer_id: int | None, kyc_status: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {CONSUMER_COLUMNS} FROM consumers c
            WHERE (%(dealer)s::bigint IS NULL OR c.dealer_id = %(dealer)s)
              AND (%(kyc)s::text IS NULL OR c.kyc_status = %(kyc)s)
            ORDER BY c.id LIMIT %(limit)s OFFSET %(offset)s""",  # noqa: S608 - constant column list
        {"dealer": dealer_id, "kyc": kyc_status, "limit": limit, "offset": offset},
    )
    return await cur.fetchall()


async def get_consumer(conn: AsyncConnection, consumer_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"""SELECT {CONSUMER_COLUMNS}, d.name AS dealer_name
            FROM consumers c JOIN dealers d ON d.id = c.dealer_id WHERE c.id = %s""",  # noqa: S608
        (consumer_id,),
    )
    return await cur.fetchone()


async def insert_consumer(
    conn: AsyncConnection,
    *,
    dealer_id: int,
    name: str,
    phone: str,
    pan: str | None,
    aadhaar_enc: bytes | None,
    aadhaar_last4: str | None,
) -> dict[str, Any] | None:
    """Insert a consumer; None when the dealer already has one with this phone."""
    cur = await conn.execute(
        f"""INSERT INTO consumers AS c (dealer_id, name, phone, pan, aadhaar_enc, aadhaar_last4)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (dealer_id, phone) DO NOTHING RETURNING {CONSUMER_COLUMNS}""",  # noqa: S608
        (dealer_id, name, phone, pan, aadhaar_enc, aadhaar_last4),
    )
    return await cur.fetchone()


async def update_kyc(
    conn: AsyncConnection,
    consumer_id: int,
    *,
    kyc_status: str,
    pan: str | None,
    aadhaar_enc: bytes | None,
    aadhaar_last4: str | None,
) -> dict[str, Any]:
    """Set the KYC status; PAN and Aadhaar change only when given."""
    cur = await conn.execute(
        f"""UPDATE consumers AS c SET kyc_status = %s, pan = coalesce(%s, pan),
                   aadhaar_enc = coalesce(%s, aadhaar_enc), aadhaar_last4 = coalesce(%s, aadhaar_last4),
                   updated_at = now()
            WHERE id = %s RETURNING {CONSUMER_COLUMNS}""",  # noqa: S608
        (kyc_status, pan, aadhaar_enc, aadhaar_last4, consumer_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def has_aadhaar(conn: AsyncConnection, consumer_id: int) -> bool:
    cur = await conn.execute(
        "SELECT aadhaar_enc IS NOT NULL AS present FROM consumers WHERE id = %s", (consumer_id,)
    )
    row = await cur.fetchone()
    return bool(row and row["present"])


async def consumer_batteries(conn: AsyncConnection, consumer_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT id, serial_number, status, health_score FROM batteries
           WHERE owner_id = %s AND deleted_at IS NULL ORDER BY id""",
        (consumer_id,),
    )
    return await cur.fetchall()


async def insert_document(
    conn: AsyncConnection,
    *,
    consumer_id: int,
    document_type: str,
    number_enc: bytes | None,
    document_url: str | None,
    sha256: str | None,
    content_type: str | None,
    size_bytes: int | None,
    original_name: str | None,
    uploaded_by: str,
) -> dict[str, Any]:
    cur = await conn.execute(
        f"""INSERT INTO consumer_documents (consumer_id, document_type, document_number_enc, document_url,
                sha256, content_type, size_bytes, original_name, uploaded_by)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {DOCUMENT_COLUMNS}""",  # noqa: S608
        (
            consumer_id,
            document_type,
            number_enc,
            document_url,
            sha256,
            content_type,
            size_bytes,
            original_name,
            uploaded_by,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def list_documents(conn: AsyncConnection, consumer_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {DOCUMENT_COLUMNS} FROM consumer_documents WHERE consumer_id = %s
            ORDER BY uploaded_at DESC, id DESC""",  # noqa: S608
        (consumer_id,),
    )
    return await cur.fetchall()


async def get_document(conn: AsyncConnection, consumer_id: int, document_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {DOCUMENT_COLUMNS} FROM consumer_documents WHERE consumer_id = %s AND id = %s",  # noqa: S608
        (consumer_id, document_id),
    )
    return await cur.fetchone()
