"""Abuse: the authorization matrix again, dealers probing for others' ids, forged tokens on every
route, and OTP brute force and phone enumeration (by body and by timing)."""

from __future__ import annotations

import base64
import json
import re
import statistics
import time
import uuid
from datetime import timedelta
from typing import Any

import jwt
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.auth.tokens import issue_token
from tests import factories
from tests.api.conftest import World, bearer, client, client_for, kept_pack_data_matches_the_packs, world
from tests.api.contract import matching_url
from tests.api.test_authorization import (
    CASES,
    PUBLIC,
    ROUTES,
    test_every_route_has_a_case,
    test_every_route_needs_a_token,
    test_matrix,
)
from tests.conftest import JWT_SECRET

pytestmark = pytest.mark.chaos
SAMPLES = 200  # logins per kind of phone in the timing comparison
# The matrix of tests/api runs in the release check too (fixtures and tests imported, not copied).
__all__ = [
    "client",
    "client_for",
    "kept_pack_data_matches_the_packs",
    "test_every_route_has_a_case",
    "test_every_route_needs_a_token",
    "test_matrix",
    "world",
]

# A value that names nothing, per kind of path parameter (new kinds get theirs here as routes land).
NOWHERE: dict[str, str] = {
    "serial": "ZZNOSUCH0001",
    "i": "ZZNOSUCH0001",
    "consumer_id": "987654321",
    "document_id": "987654321",
    "command_id": str(uuid.UUID(int=7)),
    "bulk_id": str(uuid.UUID(int=7)),
    "application_id": "987654321",
    "loan_id": "987654321",
    "payment_id": "987654321",
    "ticket_id": "987654321",
    "technician_id": "987654321",
}
PROBED = [(m, p) for (m, p) in CASES if "{" in p]


def _params(template: str, url: str) -> dict[str, str]:
    pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/?]+)", re.escape(template))
    found = re.match(pattern, url.split("?")[0])
    assert found, (template, url)
    return found.groupdict()


def _fingerprint(answer: Any) -> tuple[int, Any, Any]:
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else None
    if isinstance(body, dict):
        return answer.status_code, body.get("error"), body.get("code")
    return answer.status_code, None, None


@pytest.mark.parametrize(("method", "path"), PROBED, ids=[f"{m} {p}" for m, p in PROBED])
def test_another_dealers_ids_look_like_no_ids(
    client: TestClient, world: World, method: str, path: str
) -> None:
    """Dealer B naming dealer A's object gets what it gets for an id that does not exist: 404 (or the
    403 of a route its role may not use, whatever the id)."""
    case = CASES[(method, path)]
    url, kwargs = case.build(world, client)
    params = _params(path, url)
    unknown = [name for name in params if name not in NOWHERE]
    assert not unknown, f"add a value that names nothing for {unknown} to NOWHERE"
    nowhere_url = path.format(**{name: NOWHERE[name] for name in params})
    other = bearer(world.users()["other_dealer"])
    theirs = client.request(method, url, headers=other, **kwargs)
    nothing = client.request(method, nowhere_url, headers=other, **kwargs)
    if case.expect["other_dealer"] < 400:
        pytest.skip("not a dealer's object: every dealer may read it (the matrix says so)")
    # 404 on every route a dealer may use; a route its role may not use at all is 403 whatever the id.
    expected = 404 if case.expect["dealer"] < 400 else case.expect["other_dealer"]
    assert theirs.status_code == expected, f"{theirs.status_code} {theirs.text[:200]}"
    assert _fingerprint(theirs) == _fingerprint(nothing), (theirs.text[:200], nothing.text[:200])


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forgeries(user: dict[str, Any]) -> dict[str, str]:
    """Tokens an attacker can make without the secret, or with a leaked old one."""
    good = issue_token(user, secret=JWT_SECRET, ttl=timedelta(hours=1))
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    as_admin = _b64({**claims, "role": "admin", "dealer_id": None})
    now = int(time.time())
    return {
        "role raised, signature kept": f"{header}.{as_admin}.{signature}",
        "other user, signature kept": f"{header}.{_b64({**claims, 'sub': '1'})}.{signature}",
        "signature stripped": f"{header}.{payload}.",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{as_admin}.",
        "alg NONE": f"{_b64({'alg': 'NONE', 'typ': 'JWT'})}.{as_admin}.",
        "alg HS512, same secret": jwt.encode({**claims, "role": "admin"}, JWT_SECRET, algorithm="HS512"),
        "other secret": jwt.encode({**claims, "role": "admin"}, "an-old-leaked-secret-0123456789", "HS256"),
        "expired": jwt.encode({**claims, "exp": now - 10}, JWT_SECRET, algorithm="HS256"),
        "not yet valid": jwt.encode({**claims, "nbf": now + 3600}, JWT_SECRET, algorithm="HS256"),
        "no exp": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, JWT_SECRET, algorithm="HS256"),
        "kid injection": jwt.encode(
            {**claims, "role": "admin"}, "x" * 32, algorithm="HS256", headers={"kid": "../../dev/null"}
        ),
        "garbage": "eyJhbGciOiJIUzI1NiJ9.e30.",
        "two tokens": f"{good} {good}",
    }


FORGERY_NAMES = list(
    _forgeries({"id": 1, "role": "dealer", "dealer_id": 1, "consumer_id": None, "phone": "+1"})
)


@pytest.mark.parametrize("forgery", FORGERY_NAMES)
def test_forged_tokens_are_refused_on_every_route(client: TestClient, world: World, forgery: str) -> None:
    token = _forgeries(world.dealer_a_user)[forgery]
    refused = []
    for method, path in ROUTES:
        if (method, path) in PUBLIC:
            continue
        # Any value the path matches: authentication comes first.
        url = matching_url(path)
        answer = client.request(method, url, headers={"Authorization": f"Bearer {token}"})
        if answer.status_code != 401 or not {"error", "details", "code"} <= set(answer.json()):
            refused.append((method, path, answer.status_code))
    assert refused == [], f"{forgery}: not a 401 with the error body on {refused}"


# OTP: brute force and enumeration.


def _login(client: TestClient, phone: str) -> Any:
    return client.post("/api/auth/login", json={"phone": phone, "userType": "dealer"})


def _verify(client: TestClient, phone: str, otp: str) -> Any:
    return client.post("/api/auth/verify-otp", json={"phone": phone, "otp": otp})


def test_otp_brute_force_is_stopped(client_for, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    """With the production limits, guessing every code of one phone ends in a lockout and 429s;
    the right code among the guesses gets no token."""
    api = client_for(rate_limit_auth="5/minute")
    user = factories.user(db, "dealer")
    assert _login(api, user["phone"]).status_code == 200
    row = db.execute(
        "SELECT body FROM sms_outbox WHERE to_phone = %s ORDER BY id DESC LIMIT 1", (user["phone"],)
    ).fetchone()
    otp = next(w.rstrip(".") for w in row["body"].split() if w.rstrip(".").isdigit())
    guesses = [f"{n:06d}" for n in range(40) if f"{n:06d}" != otp] + [otp]
    answers = [_verify(api, user["phone"], guess) for guess in guesses]
    assert all(a.status_code in (401, 429) for a in answers), [a.status_code for a in answers]
    assert sum(a.status_code == 401 for a in answers) <= 5, "more guesses evaluated than the limit allows"
    assert answers[-1].status_code in (401, 429)  # the right code, too late
    assert any(a.status_code == 429 and a.json().get("code") for a in answers)


def _separability(a: list[float], b: list[float]) -> float:
    """The chance that a random sample of `a` is slower than one of `b` (0.5: indistinguishable)."""
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


def test_login_and_verify_do_not_tell_which_phones_exist(client: TestClient, db: psycopg.Connection) -> None:
    """Same status and body for a user's phone and a stranger's, and timings an attacker cannot
    tell apart: interleaved samples, compared by how often one is slower than the other."""
    users = [factories.user(db, "dealer") for _ in range(8)]
    strangers = [factories.unique_phone() for _ in range(8)]
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    bodies: set[str] = set()
    for round_no in range(SAMPLES):
        pair = (("known", users[round_no % 8]["phone"]), ("unknown", strangers[round_no % 8]))
        for kind, phone in pair if round_no % 2 else reversed(pair):
            started = time.perf_counter()
            answer = _login(client, phone)
            timings[kind].append(time.perf_counter() - started)
            bodies.add(f"{answer.status_code} {answer.text}")
    assert len(bodies) == 1, f"login answers differ: {bodies}"
    wrong = [_verify(client, users[0]["phone"], "000000"), _verify(client, strangers[0], "000000")]
    assert len({f"{a.status_code} {a.text}" for a in wrong}) == 1, [a.text for a in wrong]
    known, unknown = timings["known"][10:], timings["unknown"][10:]
    auc = _separability(known, unknown)
    print(
        f"login: known median {statistics.median(known) * 1000:.2f} ms, unknown "
        f"{statistics.median(unknown) * 1000:.2f} ms, P(known slower) {auc:.2f}"
    )
    assert 0.35 < auc < 0.65, f"a known phone's login is told apart by its timing (P = {auc:.2f})"
