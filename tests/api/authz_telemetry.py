"""Authorization cases of the telemetry query API: a dealer reads only its batteries' telemetry."""

from __future__ import annotations

from typing import Any

from tests.api.authz import LIST, READ_OWN, Case
from tests.api.conftest import World

PREFIXES = ("/api/telemetry",)


def _serial(w: World) -> str:
    return w.battery_a["serial_number"]


def _own_only(w: World, role: str, body: Any) -> None:
    serials = {r["serial_number"] for r in body}
    if role in ("dealer", "consumer"):
        assert _serial(w) in serials and w.battery_b["serial_number"] not in serials
    if role == "other_dealer":
        assert _serial(w) not in serials


def _own_positions(w: World, role: str, body: Any) -> None:
    _own_only(w, role, [f["properties"] for f in body["features"]])


def _with_position(w: World) -> None:
    for battery in (w.battery_a, w.battery_b):
        w.conn.execute(
            """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc, lat, lon)
               VALUES (%s, now(), 48, 1, 50, 12.9, 77.6) ON CONFLICT (battery_id) DO NOTHING""",
            (battery["id"],),
        )


def _positions(w: World, _: Any) -> tuple[str, dict[str, Any]]:
    _with_position(w)
    return "/api/telemetry/positions", {}


CASES: dict[tuple[str, str], Case] = {
    ("GET", "/api/telemetry/{serial}"): Case(
        lambda w, c: (f"/api/telemetry/{_serial(w)}", {"params": {"interval": "1h"}}), READ_OWN
    ),
    ("GET", "/api/telemetry/latest"): Case(lambda w, c: ("/api/telemetry/latest", {}), LIST, _own_only),
    ("GET", "/api/telemetry/positions"): Case(_positions, LIST, _own_positions),
    ("GET", "/api/telemetry/fleet"): Case(lambda w, c: ("/api/telemetry/fleet", {}), LIST),
}
