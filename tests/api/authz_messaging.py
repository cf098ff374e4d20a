"""Authorization cases of the Communication Services routes: admins and dealers send, a dealer only
to its own consumers and about its own batteries (another dealer's are not found)."""

from __future__ import annotations

from typing import Any

from tests.api.authz import WRITE_OWN, Case
from tests.api.conftest import World

PREFIXES = ("/api/messaging",)


def _queued(w: World, role: str, body: Any) -> None:
    assert body["success"] is True and body["status"] == "queued" and body["message_id"] is None
    row = w.conn.execute("SELECT * FROM sms_outbox WHERE id = %s", (body["outbox_id"],)).fetchone()
    assert row["to_phone"] == w.consumer_a["phone"]
    assert row["requested_by"] == w.users()[role]["id"]


CASES: dict[tuple[str, str], Case] = {
    ("POST", "/api/messaging/send-sms"): Case(
        lambda w, c: (
            "/api/messaging/send-sms?wait=0",
            {"json": {"to": w.consumer_a["phone"], "message": "Your battery is ready"}},
        ),
        WRITE_OWN,
        _queued,
    ),
    ("POST", "/api/messaging/send-otp"): Case(
        lambda w, c: (
            "/api/messaging/send-otp?wait=0",
            {"json": {"to": w.consumer_a["phone"], "otp": "123456"}},
        ),
        WRITE_OWN,
        _queued,
    ),
    ("POST", "/api/messaging/battery-status"): Case(
        lambda w, c: (
            "/api/messaging/battery-status?wait=0",
            {
                "json": {
                    "battery_id": w.battery_a["id"],
                    "consumer_phone": w.consumer_a["phone"],
                    "status": "active",
                }
            },
        ),
        WRITE_OWN,
        _queued,
    ),
}
