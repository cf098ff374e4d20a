"""What a request may cost before it is refused: the token is checked before the body is read, bodies
and uploads are capped while they stream, every cap answers 413 in one body, /metrics is not public."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import World, bearer

CHUNK = b"[" + b"1," * 262_143 + b"1]"  # 512 KiB of JSON array, sent many times over


def _asgi_post(
    client: TestClient, path: str, headers: dict[str, str], chunks: int, declared: int | None = None
):  # type: ignore[no-untyped-def]
    """POST `chunks` chunks to the app itself (no test transport that reads the body first); how many
    chunks the app asked for, and the messages it sent."""
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": CHUNK, "more_body": asked < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(b"content-type", b"application/json"), (b"host", b"testserver")]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declared is not None:
        raw.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return asked, start["status"], json.loads(body)


@pytest.mark.parametrize(
    "path",
    [
        "/api/batteries",
        "/api/consumers",
        "/api/commands/bulk",
        "/api/battery_pack",
        "/api/consumers/1/documents",
    ],
)
@pytest.mark.parametrize("token", [None, "not-a-jwt"])
def test_an_anonymous_body_is_not_read(client: TestClient, path: str, token: str | None) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    asked, status, body = _asgi_post(client, path, headers, chunks=48)  # 24 MiB, not declared
    assert status == 401 and body["code"] == "AUTH_REQUIRED"
    assert asked == 0


def test_a_json_body_over_the_cap_is_413_while_it_streams(client: TestClient, world: World) -> None:
    headers = bearer(world.admin)
    asked, status, body = _asgi_post(client, "/api/batteries", headers, chunks=48)
    assert status == 413 and body["code"] == "PAYLOAD_TOO_LARGE", body
    assert asked <= 3  # 1 MiB by default: the third 512 KiB chunk is over
    asked, status, body = _asgi_post(client, "/api/batteries", headers, chunks=48, declared=48 * len(CHUNK))
    assert (asked, status, body["code"]) == (0, 413, "PAYLOAD_TOO_LARGE")


def test_every_route_answers_413_alike(client_for: Callable[..., TestClient], world: World) -> None:
    client = client_for(api_max_json_bytes=1000, api_max_csv_bytes=2000, api_max_document_bytes=3000)
    headers = bearer(world.admin)
    big = "x" * 5000
    answers = [
        client.post("/api/batteries", json={"serial_number": big}, headers=headers),
        client.post("/api/battery_pack", json={"asset_tag": big}, headers=headers),
        client.patch("/api/battery_pack", json=[{"asset_tag": big}], headers=headers),
        client.post("/api/auth/login", json={"phone": big}),
        client.post(
            "/api/battery_pack",
            files={"file": ("p.csv", b"asset_tag\n" + b"A\n" * 2000, "text/csv")},
            headers=headers,
        ),
        client.post(
            f"/api/consumers/{world.consumer_a['id']}/documents",
            files={"file": ("d.pdf", b"%PDF-1.4\n" + b"0" * 4000, "application/pdf")},
            data={"document_type": "photo"},
            headers=headers,
        ),
    ]
    for answer in answers:
        assert answer.status_code == 413, (answer.request.url, answer.text)
        body = answer.json()
        assert body["error"] == "Payload too large" and body["code"] == "PAYLOAD_TOO_LARGE", body
        assert "bytes" in body["details"]
    small_csv = client.post(
        "/api/battery_pack", files={"file": ("p.csv", b"asset_tag\nSMALLCSV1\n", "text/csv")}, headers=headers
    )
    assert small_csv.status_code == 201, small_csv.text


def test_metrics_are_not_served_to_anyone_on_the_api_port(
    client_for: Callable[..., TestClient], world: World
) -> None:
    open_port = client_for()
    assert open_port.get("/metrics").status_code == 404
    assert open_port.get("/metrics", headers=bearer(world.admin)).status_code == 404
    guarded = client_for(metrics_token="s3cret-metrics-token")
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = guarded.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert scraped.status_code == 200 and "process_cpu_seconds_total" in scraped.text
