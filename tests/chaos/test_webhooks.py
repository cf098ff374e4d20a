"""NBFC webhook abuse beyond tests/api/nbfc: tampered bodies and headers under a valid signature,
one lender signing as another, and one signed event replayed from many connections at once."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas.lender import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.api.conftest import World, client, client_for, kept_pack_data_matches_the_packs, world
from tests.api.nbfc.conftest import application_status, make_lender, signed
from tests.api.nbfc.test_webhook import URL, _count_events, lender, submitted

pytestmark = pytest.mark.chaos
__all__ = ["client", "client_for", "kept_pack_data_matches_the_packs", "lender", "submitted", "world"]


def _tampered(
    lender: dict[str, Any], other: dict[str, Any], event: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Requests carrying a signature that does not cover what they say."""
    good = signed(lender, event)
    body = good["content"]
    stamp = good["headers"][TIMESTAMP_HEADER]
    cases: dict[str, dict[str, Any]] = {}

    def variant(name: str, *, content: bytes = body, **headers: str) -> None:
        cases[name] = {"content": content, "headers": {**good["headers"], **headers}}

    variant("body changed after signing", content=json.dumps({**event, "status": "rejected"}).encode())
    variant("body with a trailing space", content=body + b" ")
    variant("timestamp changed after signing", **{TIMESTAMP_HEADER: str(int(stamp) + 1)})
    variant(
        "signature without its sha256= prefix", **{SIGNATURE_HEADER: good["headers"][SIGNATURE_HEADER][7:]}
    )
    variant("signature in upper case", **{SIGNATURE_HEADER: good["headers"][SIGNATURE_HEADER].upper()})
    variant("signature truncated", **{SIGNATURE_HEADER: good["headers"][SIGNATURE_HEADER][:-2]})
    variant("timestamp not a number", **{TIMESTAMP_HEADER: "soon"})
    variant("timestamp overflowing", **{TIMESTAMP_HEADER: "9" * 40})
    variant("empty signature", **{SIGNATURE_HEADER: ""})
    now = int(time.time())
    variant(
        "another lender's secret under this lender's name",
        **{TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: sign(other["webhook_secret"], now, body)},
    )
    return cases


def test_tampered_webhooks_change_nothing(
    client: TestClient, world: World, lender: dict[str, Any], submitted: dict[str, Any]
) -> None:
    other = make_lender(world.conn)
    event = {"applicationId": submitted["id"], "status": "approved"}
    answers = {name: client.post(URL, **kwargs) for name, kwargs in _tampered(lender, other, event).items()}
    wrong = {
        name: (a.status_code, a.text[:120]) for name, a in answers.items() if a.status_code not in (400, 401)
    }
    assert not wrong, f"accepted or failed badly: {wrong}"
    assert all({"error", "details", "code"} <= set(a.json()) for a in answers.values())
    assert application_status(world.conn, submitted["id"]) == "submitted"
    assert _count_events(world, lender) == 0


def test_one_signed_event_replayed_at_once_is_applied_once(
    client: TestClient, world: World, lender: dict[str, Any], submitted: dict[str, Any]
) -> None:
    """The lender's retries (same event id, each signed anew) and an attacker's copies of one
    request, all at the same moment from 16 connections: one event, one decision."""
    event = {"applicationId": submitted["id"], "status": "rejected", "reason": "low score"}
    event_id = f"evt-{uuid.uuid4().hex[:8]}"
    copies = [signed(lender, event, event_id=event_id, at=time.time() + i % 3) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda kwargs: client.post(URL, **kwargs), copies))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 401}, statuses  # a byte-identical copy is a replay (401)
    assert 200 in statuses
    bodies = {json.dumps(a.json(), sort_keys=True) for a in answers if a.status_code == 200}
    assert len(bodies) == 1, "every accepted copy answers the one decision"
    assert _count_events(world, lender) == 1
    assert application_status(world.conn, submitted["id"]) == "rejected"
