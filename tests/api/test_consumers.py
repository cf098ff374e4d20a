"""Consumers: KYC validation, Aadhaar encrypted and masked, documents, profile and finance, scoping."""

from __future__ import annotations

import random
import re
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from api.consumers.kyc import cipher, verhoeff_digit
from api.consumers.models import normalise_document_number
from tests import factories
from tests.api.conftest import World, bearer
from tests.api.contract import document
from tests.conftest import make_settings

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def aadhaar() -> str:
    body = str(random.randint(2, 9)) + "".join(random.choices("0123456789", k=10))
    return body + verhoeff_digit(body)


def _create(client: TestClient, user: dict, **fields):  # type: ignore[no-untyped-def,type-arg]
    body = {"name": "Ram Kumar", "phone": factories.unique_phone(), **fields}
    return client.post("/api/consumers", json=body, headers=bearer(user))


def test_create_validates_and_masks(
    client: TestClient, world: World, db: psycopg.Connection, database_url: str
) -> None:
    number = aadhaar()
    created = _create(client, world.dealer_a_user, pan="abcde1234f", aadhar=number)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["aadhar"] == "XXXXXXXX" + number[-4:] and body["pan"] == "XXXXXX234F"
    assert body["kyc_status"] == "pending" and body["dealer_id"] == world.dealer_a["id"]

    stored = db.execute(
        "SELECT aadhaar_enc, aadhaar_last4, pan FROM consumers WHERE id = %s", (body["id"],)
    ).fetchone()
    assert number.encode() not in bytes(stored["aadhaar_enc"])
    assert cipher(make_settings(database_url)).decrypt(bytes(stored["aadhaar_enc"])).decode() == number
    assert stored["pan"] == "ABCDE1234F"

    as_admin = client.get(f"/api/consumers/{body['id']}/profile", headers=bearer(world.admin)).json()[
        "consumer"
    ]
    assert as_admin["pan"] == "ABCDE1234F" and as_admin["aadhar"] == "XXXXXXXX" + number[-4:]

    wrong_check = number[:-1] + str((int(number[-1]) + 1) % 10)
    bad = _create(client, world.dealer_a_user, pan="ABCD1234F", aadhar=wrong_check, phone="98765")
    assert bad.status_code == 400
    assert {d["field"] for d in bad.json()["details"]} == {"pan", "aadhar", "phone"}
    assert wrong_check not in bad.text

    phone = factories.unique_phone()
    assert _create(client, world.dealer_a_user, phone=phone).status_code == 201
    assert _create(client, world.dealer_a_user, phone=phone).status_code == 409
    assert (
        _create(client, world.dealer_b_user, phone=phone).status_code == 201
    )  # another dealer's customer too
    assert _create(client, world.admin).status_code == 400  # an admin names the dealer
    assert _create(client, world.admin, dealer_id=world.dealer_b["id"]).status_code == 201
    assert _create(client, world.technician).status_code == 403
    assert _create(client, world.dealer_a_user, dealer_id=world.dealer_b["id"]).status_code == 403


def test_list_and_scoping(client: TestClient, world: World) -> None:
    mine = client.get("/api/consumers", headers=bearer(world.dealer_a_user))
    assert mine.status_code == 200
    assert {c["dealer_id"] for c in mine.json()} == {world.dealer_a["id"]}
    assert world.consumer_b["id"] not in {c["id"] for c in mine.json()}
    assert client.get("/api/consumers", headers=bearer(world.consumer_a_user)).status_code == 403
    other = client.get(
        f"/api/consumers/{world.consumer_b['id']}/profile", headers=bearer(world.dealer_a_user)
    )
    assert other.status_code == 404
    own = client.get(
        f"/api/consumers/{world.consumer_a['id']}/profile", headers=bearer(world.consumer_a_user)
    )
    assert own.status_code == 200
    foreign = client.get(
        f"/api/consumers/{world.consumer_b['id']}/finance", headers=bearer(world.consumer_a_user)
    )
    assert foreign.status_code == 404


def test_kyc_update(client: TestClient, world: World) -> None:
    cid = world.consumer_a["id"]
    url = f"/api/consumers/{cid}/kyc"
    incomplete = client.put(url, json={"kyc_status": "verified"}, headers=bearer(world.dealer_a_user))
    assert incomplete.status_code == 400 and {d["field"] for d in incomplete.json()["details"]} == {
        "pan",
        "aadhar",
    }
    number = aadhaar()
    done = client.put(
        url,
        json={"kyc_status": "verified", "pan": "ABCDE1234F", "aadhaar": number},
        headers=bearer(world.dealer_a_user),
    )
    assert done.status_code == 200 and done.json()["kyc_status"] == "verified"
    assert done.json()["aadhar"] == "XXXXXXXX" + number[-4:]
    assert (
        client.put(url, json={"kyc_status": "rejected"}, headers=bearer(world.dealer_b_user)).status_code
        == 404
    )
    assert (
        client.put(url, json={"kyc_status": "rejected"}, headers=bearer(world.consumer_a_user)).status_code
        == 403
    )
    assert client.put(url, json={"kyc_status": "maybe"}, headers=bearer(world.admin)).status_code == 400


def test_profile_and_finance(client: TestClient, world: World, db: psycopg.Connection) -> None:
    cid = world.consumer_a["id"]
    factories.battery(db, dealer_id=world.dealer_a["id"], owner_id=cid)
    db.execute("UPDATE batteries SET status = 'inactive' WHERE id = %s", (world.battery_a["id"],))
    profile = client.get(f"/api/consumers/{cid}/profile", headers=bearer(world.dealer_a_user)).json()
    assert profile["consumer"]["dealer_name"] == "A Motors"
    assert len(profile["batteries"]) == 2 and profile["recent_tickets"] == []
    assert profile["summary"] == {
        "total_batteries": 2,
        "active_batteries": 1,
        "total_service_tickets": 0,
        "active_service_tickets": 0,
    }
    assert set(profile["batteries"][0]) == {
        "id",
        "serial_number",
        "status",
        "health_score",
        "service_tickets_count",
        "active_tickets_count",
    }
    finance = client.get(f"/api/consumers/{cid}/finance", headers=bearer(world.consumer_a_user)).json()
    assert finance == {"applications": [], "emi_schedules": [], "total_applications": 0, "total_emi_due": 0}


def test_documents_upload_download_and_limits(client: TestClient, world: World, tmp_path: Path) -> None:
    cid = world.consumer_a["id"]
    url = f"/api/consumers/{cid}/documents"
    dealer = bearer(world.dealer_a_user)
    up = client.post(
        url,
        data={"document_type": "pan_card", "document_number": "ABCDE1234F"},
        files={"file": ("pan.pdf", PDF, "application/pdf")},
        headers=dealer,
    )
    assert up.status_code == 201, up.text
    doc = up.json()["document"]
    assert up.json()["message"] == "Document uploaded successfully" and "note" not in up.json()
    extra = client.post(
        url,
        data={
            "document_type": "photo",
            "expiry": "2030-01-01",
        },  # a part the form has not: refused, not ignored
        files={"file": ("a.pdf", PDF, "application/pdf")},
        headers=dealer,
    )
    assert extra.status_code == 400 and extra.json()["details"][0]["field"] == "expiry", extra.text
    assert doc["status"] == "pending_verification" and doc["content_type"] == "application/pdf"
    assert doc["document_number"] == "XXXXXX234F"
    stored = tmp_path / "documents" / doc["sha256"][:2] / doc["sha256"]
    assert stored.read_bytes() == PDF

    got = client.get(doc["document_url"], headers=dealer)
    assert got.status_code == 200 and got.content == PDF
    assert (
        got.headers["content-type"] == "application/pdf"
        and got.headers["x-content-type-options"] == "nosniff"
    )
    assert client.get(doc["document_url"], headers=bearer(world.dealer_b_user)).status_code == 404
    assert client.get(doc["document_url"], headers=bearer(world.consumer_a_user)).status_code == 200
    assert client.get(doc["document_url"], headers=bearer(world.nbfc)).status_code == 403

    number = aadhaar()
    card = client.post(
        url,
        data={"document_type": "aadhar_card", "document_number": number},
        files={"file": ("a.png", PNG, "image/png")},
        headers=bearer(world.admin),
    )
    assert card.status_code == 201 and card.json()["document"]["document_number"] == "XXXXXXXX" + number[-4:]

    script = client.post(
        url,
        data={"document_type": "photo"},
        files={"file": ("x.jpg", b"#!/bin/sh\nrm -rf /\n", "image/jpeg")},
        headers=dealer,
    )
    assert script.status_code == 415
    lying = client.post(
        url, data={"document_type": "photo"}, files={"file": ("x.jpg", PNG, "image/jpeg")}, headers=dealer
    )
    assert lying.status_code == 415
    big = client.post(
        url,
        data={"document_type": "photo"},
        files={"file": ("x.pdf", PDF + b"0" * (6 * 2**20), "application/pdf")},
        headers=dealer,
    )
    assert big.status_code == 413
    wrong_type = client.post(
        url,
        data={"document_type": "selfie"},
        files={"file": ("x.pdf", PDF, "application/pdf")},
        headers=dealer,
    )
    assert wrong_type.status_code == 400 and "document_type" in wrong_type.json()["error"]
    bad_number = client.post(
        url,
        data={"document_type": "pan_card", "document_number": "123"},
        files={"file": ("x.pdf", PDF, "application/pdf")},
        headers=dealer,
    )
    assert bad_number.status_code == 400

    link = client.post(
        url,
        json={
            "document_type": "address_proof",
            "document_url": "https://storage.example.com/bill.jpg",
            "document_number": "EB-99812",
        },
        headers=dealer,
    )
    assert (
        link.status_code == 201
        and link.json()["document"]["document_url"] == "https://storage.example.com/bill.jpg"
    )
    bad_link = client.post(
        url, json={"document_type": "photo", "document_url": "javascript:alert(1)"}, headers=dealer
    )
    assert bad_link.status_code == 400

    listed = client.get(url, headers=dealer).json()
    assert [d["document_type"] for d in listed] == ["address_proof", "aadhaar_card", "pan_card"]
    assert client.get(url, headers=bearer(world.dealer_b_user)).status_code == 404
    link_file = client.get(f"{url}/{link.json()['document']['id']}/file", headers=dealer)
    assert link_file.status_code == 404


def test_upload_rate_limit(client_for, world: World) -> None:  # type: ignore[no-untyped-def]
    client = client_for(rate_limit_upload="2/minute")
    url = f"/api/consumers/{world.consumer_a['id']}/documents"
    statuses = [
        client.post(
            url,
            data={"document_type": "photo"},
            files={"file": ("p.png", PNG, "image/png")},
            headers=bearer(world.dealer_a_user),
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [201, 201, 429]


def test_aadhaar_never_appears_unmasked(client: TestClient, world: World, db: psycopg.Connection) -> None:
    """Every answer of every consumer endpoint, for every role, is searched for the number."""
    seen: list[str] = []
    client.event_hooks["response"].append(lambda r: seen.append(r.read().decode("utf-8", "replace")))
    number, doc_number = aadhaar(), aadhaar()
    created = _create(client, world.dealer_a_user, aadhar=number, pan="ABCDE1234F")
    cid = created.json()["id"]
    client.put(
        f"/api/consumers/{cid}/kyc",
        json={"kyc_status": "verified", "aadhar": number},
        headers=bearer(world.admin),
    )
    client.post(
        f"/api/consumers/{cid}/documents",
        data={"document_type": "aadhaar_card", "document_number": doc_number},
        files={"file": ("a.pdf", PDF, "application/pdf")},
        headers=bearer(world.dealer_a_user),
    )
    client.post(
        f"/api/consumers/{cid}/documents",
        json={
            "document_type": "aadhaar_card",
            "document_url": "https://x.example/a.pdf",
            "document_number": doc_number,
        },
        headers=bearer(world.admin),
    )
    login = db.execute("SELECT * FROM users WHERE consumer_id = %s", (cid,)).fetchone()
    for user in [*world.users().values(), login]:
        headers = bearer(user)
        client.get("/api/consumers", headers=headers)
        client.get("/api/consumers", params={"dealer_id": world.dealer_a["id"]}, headers=headers)
        for path in ("profile", "finance", "documents"):
            client.get(f"/api/consumers/{cid}/{path}", headers=headers)
    # a bad Aadhaar in a request is not echoed back either
    client.post(
        "/api/consumers",
        json={"name": "X", "phone": factories.unique_phone(), "aadhar": number[:-1] + "x"},
        headers=bearer(world.admin),
    )
    assert len(seen) > 30
    spaced = f"{number[:4]} {number[4:8]} {number[8:]}"
    for text in seen:
        for secret in (number, doc_number, spaced, number[:-1]):
            assert secret not in text
    assert any("XXXXXXXX" + number[-4:] in text for text in seen)


def test_a_new_consumer_can_log_in_and_see_only_their_own(
    client: TestClient, world: World, db: psycopg.Connection
) -> None:
    phone = factories.unique_phone()
    created = client.post(
        "/api/consumers", json={"name": "Meera", "phone": phone}, headers=bearer(world.dealer_a_user)
    ).json()
    assert client.post("/api/auth/login", json={"phone": phone, "userType": "consumer"}).status_code == 200
    sms = db.execute(
        "SELECT body FROM sms_outbox WHERE to_phone = %s ORDER BY id DESC LIMIT 1", (phone,)
    ).fetchone()
    otp = next(w.rstrip(".") for w in sms["body"].split() if w.rstrip(".").isdigit())
    verified = client.post("/api/auth/verify-otp", json={"phone": phone, "otp": otp}).json()
    assert verified["user"]["role"] == "consumer"
    headers = {"Authorization": f"Bearer {verified['token']}"}
    assert client.get(f"/api/consumers/{created['id']}/profile", headers=headers).status_code == 200
    assert client.get(f"/api/consumers/{world.consumer_a['id']}/profile", headers=headers).status_code == 404
    assert client.get("/api/batteries", headers=headers).json() == []


def test_a_documents_number_follows_its_type_in_the_document() -> None:
    """A pan_card with any number was documented valid and refused: the JSON body says a PAN's or
    an Aadhaar's number has its pattern, and the code takes exactly those (a blank number is none)."""
    op = document()["paths"]["/api/consumers/{consumer_id}/documents"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in op  # its number is described only (see api/consumers/router.py)
    link = document()["components"]["schemas"]["DocumentLink"]
    for body in (link,):
        rules = {r["if"]["properties"]["document_type"]["const"]: r["then"] for r in body["allOf"]}
        pan = rules["pan_card"]["properties"]["document_number"]["anyOf"][0]["pattern"]
        assert re.search(pan, " abcde1234f ") and re.search(pan, "") and not re.search(pan, "000000000000")
        assert "aadhaar_card" in rules
    assert normalise_document_number("pan_card", " abcde1234f ") == "ABCDE1234F"
    assert normalise_document_number("pan_card", "  ") is None
