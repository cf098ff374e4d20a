"""The authorization matrix, generated from the app's route table (its OpenAPI paths).

Every /api route answers 401 without a valid token (except login). Every route of the asset APIs has
a case below: each role gets the expected status, and a dealer never sees another dealer's objects
(404, or absent from lists). A route added without a case fails `test_every_route_has_a_case`.
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tests.api
from api.app import create_app
from api.consumers import storage
from tests.api.authz import LIST, READ_OWN, ROLES, WRITE_OWN, Case, statuses
from tests.api.conftest import World, bearer
from tests.api.contract import matching_url
from tests.conftest import make_settings

PUBLIC = {("POST", "/api/auth/login"), ("POST", "/api/auth/verify-otp")}
# Routes of the other engineers' areas; only the universal 401 rule is checked here.
OWNED_PREFIXES = ("/api/auth", "/api/batteries", "/api/battery_pack", "/api/consumers")
NOT_OURS = {
    ("POST", "/api/batteries/{serial}/control"),
    ("GET", "/api/batteries/{serial}/commands"),
    ("POST", "/api/battery_pack/{i}/enable"),
}


def _new_tag() -> str:
    return f"Z{uuid.uuid4().hex[:12].upper()}"


def _serial(w: World) -> str:
    return w.battery_a["serial_number"]


def _stored_document(w: World, client: TestClient) -> int:
    data = b"%PDF-1.4\n" + uuid.uuid4().bytes
    digest = storage.store(client.app.state.settings.documents_dir, data)  # type: ignore[attr-defined]
    return w.conn.execute(
        """INSERT INTO consumer_documents
               (consumer_id, document_type, sha256, content_type, size_bytes, uploaded_by)
           VALUES (%s, 'photo', %s, 'application/pdf', %s, 'test') RETURNING id""",
        (w.consumer_a["id"], digest, len(data)),
    ).fetchone()["id"]


def _no_foreign_batteries(w: World, role: str, body: Any) -> None:
    serials = {b.get("serial_number") or b.get("asset_tag") for b in body}
    if role == "other_dealer":
        assert _serial(w) not in serials
    if role in ("dealer", "consumer"):
        assert w.battery_b["serial_number"] not in serials


def _no_foreign_consumers(w: World, role: str, body: Any) -> None:
    ids = {c["id"] for c in body}
    if role == "other_dealer":
        assert w.consumer_a["id"] not in ids
    if role == "dealer":
        assert w.consumer_b["id"] not in ids


def _health_scoped(w: World, role: str, body: Any) -> None:
    if role in ("dealer", "other_dealer", "consumer"):
        assert body["total_batteries"] == 1  # its own battery only


CASES: dict[tuple[str, str], Case] = {
    ("GET", "/api/batteries"): Case(lambda w, c: ("/api/batteries", {}), LIST, _no_foreign_batteries),
    ("POST", "/api/batteries"): Case(  # admins register batteries (README: "Who registers batteries")
        lambda w, c: ("/api/batteries", {"json": {"serial_number": _new_tag()}}),
        statuses(201, 403, 403, 403),
    ),
    ("GET", "/api/batteries/health-report"): Case(
        lambda w, c: ("/api/batteries/health-report", {}), LIST, _health_scoped
    ),
    ("GET", "/api/batteries/{serial}"): Case(lambda w, c: (f"/api/batteries/{_serial(w)}", {}), READ_OWN),
    ("PUT", "/api/batteries/{serial}/assign"): Case(
        lambda w, c: (f"/api/batteries/{_serial(w)}/assign", {"json": {"consumer_id": w.consumer_a["id"]}}),
        WRITE_OWN,
    ),
    ("GET", "/api/batteries/{serial}/activity"): Case(
        lambda w, c: (f"/api/batteries/{_serial(w)}/activity", {}), READ_OWN
    ),
    ("GET", "/api/battery_pack"): Case(lambda w, c: ("/api/battery_pack", {}), LIST, _no_foreign_batteries),
    ("POST", "/api/battery_pack"): Case(
        lambda w, c: ("/api/battery_pack", {"json": {"asset_tag": _new_tag(), "model": "M"}}),
        statuses(201, 403, 403, 403),
    ),
    ("PATCH", "/api/battery_pack"): Case(
        lambda w, c: ("/api/battery_pack", {"json": [{"asset_tag": _serial(w), "location": "Pune"}]}),
        WRITE_OWN,  # another dealer's tag is reported as "not found" in the row report (404)
    ),
    ("DELETE", "/api/battery_pack"): Case(
        lambda w, c: ("/api/battery_pack", {"json": {"asset_tags": [_serial(w)]}}), WRITE_OWN
    ),
    ("GET", "/api/battery_pack/{i}"): Case(lambda w, c: (f"/api/battery_pack/{_serial(w)}", {}), READ_OWN),
    ("PATCH", "/api/battery_pack/{i}"): Case(
        lambda w, c: (f"/api/battery_pack/{_serial(w)}", {"json": {"location": "Pune"}}), WRITE_OWN
    ),
    ("DELETE", "/api/battery_pack/{i}"): Case(
        lambda w, c: (f"/api/battery_pack/{_serial(w)}", {}), WRITE_OWN
    ),
    ("POST", "/api/battery_pack/{i}/allocate"): Case(
        lambda w, c: (
            f"/api/battery_pack/{_serial(w)}/allocate",
            {
                "json": {
                    "target_category": "Vehicle",
                    "target_individual": "KA01",
                    "status_label": "In Vehicle",
                }
            },
        ),
        WRITE_OWN,
    ),
    ("GET", "/api/battery_pack/{i}/activity"): Case(
        lambda w, c: (f"/api/battery_pack/{_serial(w)}/activity", {}), READ_OWN
    ),
    ("GET", "/api/consumers"): Case(
        lambda w, c: ("/api/consumers", {}), statuses(200, 200, 200, 403), _no_foreign_consumers
    ),
    ("POST", "/api/consumers"): Case(
        lambda w, c: (
            "/api/consumers",
            {
                "json": {
                    "name": "N",
                    "phone": f"+9177{uuid.uuid4().int % 10**8:08d}",
                    "dealer_id": w.dealer_a["id"],
                }
            },
        ),
        # a dealer naming another dealer's id is refused; the admin names dealer A
        statuses(201, 201, 403, 403),
    ),
    ("PUT", "/api/consumers/{consumer_id}/kyc"): Case(
        lambda w, c: (f"/api/consumers/{w.consumer_a['id']}/kyc", {"json": {"kyc_status": "rejected"}}),
        WRITE_OWN,
    ),
    ("GET", "/api/consumers/{consumer_id}/finance"): Case(
        lambda w, c: (f"/api/consumers/{w.consumer_a['id']}/finance", {}), READ_OWN
    ),
    ("GET", "/api/consumers/{consumer_id}/profile"): Case(
        lambda w, c: (f"/api/consumers/{w.consumer_a['id']}/profile", {}), READ_OWN
    ),
    ("POST", "/api/consumers/{consumer_id}/documents"): Case(
        lambda w, c: (
            f"/api/consumers/{w.consumer_a['id']}/documents",
            {"json": {"document_type": "photo", "document_url": "https://example.com/p.jpg"}},
        ),
        statuses(201, 201, 404, 201),
    ),
    ("GET", "/api/consumers/{consumer_id}/documents"): Case(
        lambda w, c: (f"/api/consumers/{w.consumer_a['id']}/documents", {}), READ_OWN
    ),
    ("GET", "/api/consumers/{consumer_id}/documents/{document_id}/file"): Case(
        lambda w, c: (f"/api/consumers/{w.consumer_a['id']}/documents/{_stored_document(w, c)}/file", {}),
        READ_OWN,
    ),
}


def _collect_domains() -> None:
    """Add each `tests/api/authz_<domain>.py` module's prefixes and cases."""
    global OWNED_PREFIXES
    for module in pkgutil.iter_modules(tests.api.__path__):
        if module.name.startswith("authz_"):
            domain = importlib.import_module(f"tests.api.{module.name}")
            OWNED_PREFIXES += tuple(domain.PREFIXES)
            clash = set(domain.CASES) & set(CASES)
            assert not clash, f"{module.name} repeats cases: {clash}"
            CASES.update(domain.CASES)


_collect_domains()


def _routes() -> list[tuple[str, str]]:
    app = create_app(make_settings("postgresql://unused/unused"))
    return [(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops]


ROUTES = _routes()
MATRIX = [(m, p, role) for (m, p) in CASES for role in ROLES]


def test_every_route_has_a_case() -> None:
    ours = {r for r in ROUTES if r[1].startswith(OWNED_PREFIXES) and r not in PUBLIC and r not in NOT_OURS}
    assert ours == set(CASES), f"routes without a case: {ours - set(CASES)}; stale cases: {set(CASES) - ours}"


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_needs_a_token(client: TestClient, method: str, path: str) -> None:
    # Any value the path matches: authentication comes first.
    url = matching_url(path)
    answer = client.request(method, url)
    if (method, path) in PUBLIC:
        assert answer.status_code != 401 or path.endswith("verify-otp")
    else:
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] and answer.json()["code"]


@pytest.mark.parametrize(("method", "path", "role"), MATRIX, ids=[f"{m} {p} {r}" for m, p, r in MATRIX])
def test_matrix(client: TestClient, world: World, method: str, path: str, role: str) -> None:
    case = CASES[(method, path)]
    url, kwargs = case.build(world, client)
    headers = {**bearer(world.users()[role]), **kwargs.pop("headers", {})}  # a case may add its own
    answer = client.request(method, url, headers=headers, **kwargs)
    assert answer.status_code == case.expect[role], f"{role}: {answer.status_code} {answer.text[:300]}"
    if answer.status_code >= 400:
        assert set(answer.json()) >= {"error", "details", "code"}
    elif case.check is not None:
        case.check(world, role, answer.json())
