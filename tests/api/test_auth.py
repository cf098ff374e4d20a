"""Phone + OTP login, JWT checks and the auth rate limits, through the HTTP API."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import jwt
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.auth.service import LOGIN_FLOOR_S
from api.auth.tokens import issue_token
from tests import factories
from tests.api.conftest import clear_of_a_window_edge
from tests.conftest import JWT_SECRET


def _otp_from_outbox(db: psycopg.Connection, phone: str) -> str | None:
    row = db.execute(
        "SELECT body FROM sms_outbox WHERE to_phone = %s AND kind = 'otp' ORDER BY id DESC LIMIT 1", (phone,)
    ).fetchone()
    if row is None:
        return None
    return next(word.rstrip(".") for word in row["body"].split() if word.rstrip(".").isdigit())


def _login(client: TestClient, phone: str, user_type: str | None = "dealer"):  # type: ignore[no-untyped-def]
    return client.post("/api/auth/login", json={"phone": phone, "userType": user_type})


def test_login_then_verify_gives_a_working_token(client: TestClient, db: psycopg.Connection) -> None:
    dealer = factories.user(db, "dealer", name="John Doe")
    answer = _login(client, dealer["phone"])
    assert answer.status_code == 200
    assert answer.json() == {"success": True, "message": "OTP sent successfully"}
    otp = _otp_from_outbox(db, dealer["phone"])
    assert otp is not None and len(otp) == 6
    stored = db.execute("SELECT code_hash FROM otp_codes WHERE phone = %s", (dealer["phone"],)).fetchone()
    assert otp.encode() not in bytes(stored["code_hash"])  # hashed, not kept in clear

    verified = client.post("/api/auth/verify-otp", json={"phone": dealer["phone"], "otp": otp})
    assert verified.status_code == 200, verified.text
    body = verified.json()
    assert body["success"] is True
    assert body["user"] == {
        "id": dealer["id"],
        "name": "John Doe",
        "phone": dealer["phone"],
        "role": "dealer",
    }
    claims = jwt.decode(body["token"], JWT_SECRET, algorithms=["HS256"])
    assert (
        claims["role"] == "dealer"
        and claims["dealer_id"] == dealer["dealer_id"]
        and claims["exp"] > time.time()
    )
    listed = client.get("/api/batteries", headers={"Authorization": f"Bearer {body['token']}"})
    assert listed.status_code == 200

    again = client.post("/api/auth/verify-otp", json={"phone": dealer["phone"], "otp": otp})
    assert again.status_code == 401  # a code works once


def test_unknown_phone_gets_the_same_answer_and_no_sms(client: TestClient, db: psycopg.Connection) -> None:
    known = factories.user(db, "dealer")
    unknown = factories.unique_phone()
    a, b = _login(client, known["phone"]), _login(client, unknown)
    assert (a.status_code, a.json()) == (b.status_code, b.json())
    assert _otp_from_outbox(db, unknown) is None
    # the wrong role for a known phone is treated as unknown too
    c = _login(client, known["phone"], "consumer")
    assert (c.status_code, c.json()) == (a.status_code, a.json())
    for guess in ("000000", "123456"):
        bad = client.post("/api/auth/verify-otp", json={"phone": unknown, "otp": guess})
        assert bad.status_code == 401 and bad.json()["code"] == "OTP_INVALID"


def test_wrong_tries_lock_the_code(client: TestClient, db: psycopg.Connection) -> None:
    user = factories.user(db, "technician")
    _login(client, user["phone"], None)
    otp = _otp_from_outbox(db, user["phone"])
    wrong = f"{(int(otp) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1):
        answer = client.post("/api/auth/verify-otp", json={"phone": user["phone"], "otp": wrong})
        assert answer.status_code == 401
        assert answer.json()["code"] == "OTP_INVALID" and f"{left} attempt" in answer.json()["details"]
    fifth = client.post("/api/auth/verify-otp", json={"phone": user["phone"], "otp": wrong})
    assert fifth.status_code == 401 and fifth.json()["code"] == "OTP_LOCKED"
    right = client.post("/api/auth/verify-otp", json={"phone": user["phone"], "otp": otp})
    assert right.status_code == 401 and right.json()["code"] == "OTP_LOCKED"
    # a new code unlocks
    _login(client, user["phone"], None)
    fresh = _otp_from_outbox(db, user["phone"])
    assert client.post("/api/auth/verify-otp", json={"phone": user["phone"], "otp": fresh}).status_code == 200


def test_expired_and_superseded_codes_are_refused(client: TestClient, db: psycopg.Connection) -> None:
    user = factories.user(db, "nbfc")
    _login(client, user["phone"], "nbfc")
    otp = _otp_from_outbox(db, user["phone"])
    db.execute(
        "UPDATE otp_codes SET expires_at = now() - interval '1 second' WHERE phone = %s", (user["phone"],)
    )
    expired = client.post("/api/auth/verify-otp", json={"phone": user["phone"], "otp": otp})
    assert expired.status_code == 401 and expired.json()["code"] == "OTP_EXPIRED"

    _login(client, user["phone"], "nbfc")
    first = _otp_from_outbox(db, user["phone"])
    _login(client, user["phone"], "nbfc")
    second = _otp_from_outbox(db, user["phone"])
    if first != second:
        old = client.post("/api/auth/verify-otp", json={"phone": user["phone"], "otp": first})
        assert old.status_code == 401
    assert (
        client.post("/api/auth/verify-otp", json={"phone": user["phone"], "otp": second}).status_code == 200
    )


def test_bad_bodies_are_400_with_fields(client: TestClient) -> None:
    answer = client.post("/api/auth/login", json={"phone": "98765"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "VALIDATION_ERROR" and "phone" in answer.json()["error"]
    answer = client.post("/api/auth/verify-otp", json={"phone": "+919876543210", "otp": "12"})
    assert answer.status_code == 400 and "otp" in answer.json()["error"]


def test_auth_rate_limit_per_ip(client_for, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    client = client_for(rate_limit_auth="5/minute")
    clear_of_a_window_edge()
    answers = [_login(client, factories.unique_phone()) for _ in range(6)]
    assert [a.status_code for a in answers[:5]] == [200] * 5
    limited = answers[5]
    assert limited.status_code == 429
    body = limited.json()
    assert body["error"] == "Rate limit exceeded" and body["details"].startswith("Too many requests")
    assert 1 <= body["retry_after"] <= 60
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_auth_rate_limit_per_phone(client_for) -> None:  # type: ignore[no-untyped-def]
    first = client_for(rate_limit_auth="3/minute")
    clear_of_a_window_edge()
    # A second client on the same app, from other addresses (no second lifespan: same pool).
    phone = factories.unique_phone()
    codes = []
    for i in range(4):
        other = TestClient(first.app, client=(f"10.0.0.{i + 1}", 5000))
        codes.append(_login(other, phone).status_code)
    assert codes == [200, 200, 200, 429]


def test_api_rate_limit_per_user(client_for, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    client = client_for(rate_limit_api="3/minute")
    clear_of_a_window_edge()
    dealer, other = factories.user(db, "dealer"), factories.user(db, "dealer")
    headers = {"Authorization": f"Bearer {_token(dealer)}"}
    statuses = [client.get("/api/batteries", headers=headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    # another user has a budget of its own
    assert (
        client.get("/api/batteries", headers={"Authorization": f"Bearer {_token(other)}"}).status_code == 200
    )


def _token(user: dict, **kw) -> str:  # type: ignore[no-untyped-def,type-arg]
    return issue_token(user, secret=kw.get("secret", JWT_SECRET), ttl=kw.get("ttl", timedelta(hours=1)))


def _b64(data: dict) -> str:  # type: ignore[type-arg]
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "kind", ["missing", "garbage", "bad_signature", "alg_none", "expired", "unknown_role"]
)
def test_bad_tokens_are_401(client: TestClient, db: psycopg.Connection, kind: str) -> None:
    user = factories.user(db, "admin")
    tokens = {
        "missing": None,
        "garbage": "not-a-jwt",
        "bad_signature": _token(user, secret="another-secret-of-enough-length"),
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}."
        f"{_b64({'sub': str(user['id']), 'role': 'admin', 'exp': int(time.time()) + 3600})}.",
        "expired": _token(user, ttl=timedelta(seconds=-5)),
        "unknown_role": jwt.encode(
            {"sub": "1", "role": "root", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256"
        ),
    }
    headers = {} if tokens[kind] is None else {"Authorization": f"Bearer {tokens[kind]}"}
    answer = client.get("/api/batteries", headers=headers)
    assert answer.status_code == 401
    assert set(answer.json()) >= {"error", "details", "code"}


def test_a_token_that_expires_after_use_is_refused(client: TestClient, db: psycopg.Connection) -> None:
    """The API keeps verified tokens; a kept token must still stop working at its expiry."""
    user = factories.user(db, "admin")
    token = _token(user, ttl=timedelta(seconds=2))
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/batteries", headers=headers).status_code == 200
    assert client.get("/api/batteries", headers=headers).status_code == 200  # from the kept tokens
    time.sleep(2.1)
    answer = client.get("/api/batteries", headers=headers)
    assert answer.status_code == 401 and answer.json()["error"] == "Invalid or expired token"
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")  # never kept: verified, refused
    assert client.get("/api/batteries", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401


def test_a_deactivated_or_changed_account_loses_its_token(client_for, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    """A token describes the account when it was issued; the API rechecks the account itself."""
    client = client_for(auth_recheck_seconds=0)
    dealer = factories.dealer(db, "Standing Motors")
    user = factories.user(db, "dealer", dealer_id=dealer["id"])
    headers = {"Authorization": f"Bearer {_token(user)}"}
    assert client.get("/api/batteries", headers=headers).status_code == 200
    db.execute("UPDATE users SET active = false WHERE id = %s", (user["id"],))
    refused = client.get("/api/batteries", headers=headers)
    assert refused.status_code == 401 and "sign in again" in refused.json()["error"]
    db.execute("UPDATE users SET active = true WHERE id = %s", (user["id"],))
    assert client.get("/api/batteries", headers=headers).status_code == 200
    other = factories.dealer(db, "Other Motors")
    db.execute("UPDATE users SET dealer_id = %s WHERE id = %s", (other["id"], user["id"]))
    assert client.get("/api/batteries", headers=headers).status_code == 401  # the token names the old dealer


def test_the_account_is_rechecked_at_most_every_few_seconds(client_for, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    client = client_for(auth_recheck_seconds=1)
    user = factories.user(db, "admin")
    headers = {"Authorization": f"Bearer {_token(user)}"}
    assert client.get("/api/batteries", headers=headers).status_code == 200
    db.execute("UPDATE users SET active = false WHERE id = %s", (user["id"],))
    assert client.get("/api/batteries", headers=headers).status_code == 200  # within the recheck time
    time.sleep(1.1)
    assert client.get("/api/batteries", headers=headers).status_code == 401


def test_every_login_takes_the_same_floor(client: TestClient, db: psycopg.Connection) -> None:
    """A known phone's extra work (its SMS) hides under the floor: both answer after it, not far past
    it (the distributions are compared in tests/chaos/test_abuse.py)."""
    for phone in (factories.user(db, "dealer")["phone"], factories.unique_phone()):
        started = time.perf_counter()
        assert _login(client, phone).status_code == 200
        assert time.perf_counter() - started >= LOGIN_FLOOR_S
