"""The ack rules, pure: forward only, duplicates and strays change nothing, late acks still report."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from control.acks import Ack, fold
from control.inbound import DeadLetter, Online, parse

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CMD = uuid.uuid4()


def _command(status: str = "sent", **overrides: object) -> dict:
    return {
        "id": CMD,
        "serial_number": "BAT1",
        "action": "disable",
        "spec": "discharging",
        "status": status,
        "delivered_at": None,
        "finished_at": None,
        "last_sent_at": T0,
        **overrides,
    }


def _ack(
    stage: str,
    second: float,
    *,
    serial: str = "BAT1",
    enabled: bool | None = None,
    error: str | None = None,
    ts: datetime | None = None,
) -> Ack:
    return Ack(
        serial=serial,
        id=CMD,
        stage=stage,
        enabled=enabled,
        error=error,
        ts=ts,
        received_at=T0 + timedelta(seconds=second),
        topic=f"batteries/{serial}/cmd/ack",
        payload=b"{}",
    )


def test_received_then_applied() -> None:
    out = fold(_command(), [_ack("received", 1), _ack("applied", 2, enabled=False)])
    assert (out.status, out.delivered_at, out.finished_at) == (
        "succeeded",
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2),
    )
    assert [e[0] for e in out.events] == ["delivered", "succeeded"]
    assert out.reported == (False, "discharging", T0 + timedelta(seconds=2))
    assert out.device_enabled is False and out.latencies == [("received", 1.0), ("applied", 2.0)]


def test_applied_before_received_implies_delivery_and_the_late_received_is_ignored() -> None:
    out = fold(_command(), [_ack("applied", 1), _ack("received", 2)])
    assert out.status == "succeeded" and out.delivered_at == T0 + timedelta(seconds=1)
    assert out.device_enabled is False  # a disable, applied
    assert [why for _, why in out.ignored] == ["received while succeeded"]


def test_rejected_fails_with_the_error() -> None:
    out = fold(_command("delivered", delivered_at=T0), [_ack("rejected", 1, error="BMS fault", enabled=True)])
    assert out.status == "failed" and out.error == "BMS fault" and out.delivered_at == T0
    assert out.reported == (True, None, T0 + timedelta(seconds=1))


@pytest.mark.parametrize("status", ["succeeded", "failed", "expired", "cancelled"])
def test_final_commands_never_move(status: str) -> None:
    command = _command(status, delivered_at=None, finished_at=T0)
    out = fold(command, [_ack("received", 1), _ack("applied", 2, enabled=False), _ack("rejected", 3)])
    assert not out.changed and out.status == status and out.finished_at == T0 and out.events == []
    assert len(out.ignored) == 3
    assert out.reported == (False, "discharging", T0 + timedelta(seconds=2))  # the device did apply it


def test_an_ack_on_another_batterys_topic_is_set_aside() -> None:
    out = fold(_command(), [_ack("applied", 1, serial="BAT2", enabled=False)])
    assert not out.changed and out.reported is None and len(out.wrong_battery) == 1


def test_a_device_clock_in_the_future_does_not_push_the_report_ahead() -> None:
    ack = _ack("applied", 1, enabled=False, ts=T0 + timedelta(days=1))
    assert fold(_command(), [ack]).reported == (False, "discharging", T0 + timedelta(seconds=1))


def test_parse_sorts_messages() -> None:
    now = T0
    cid = str(uuid.uuid4())
    ack = parse("batteries/B1/cmd/ack", f'{{"id": "{cid}", "stage": "received"}}'.encode(), now)
    assert isinstance(ack, Ack) and str(ack.id) == cid and ack.serial == "B1"
    assert isinstance(parse("batteries/B1/cmd/ack", b"nope", now), DeadLetter)
    nul = parse(
        "batteries/B1/cmd/ack", f'{{"id": "{cid}", "stage": "rejected", "error": "a\\u0000b"}}'.encode(), now
    )
    assert isinstance(nul, Ack) and nul.error == "ab"
    bad = parse("batteries/B1/cmd/ack", b'{"id": "x", "stage": "received"}', now)
    assert isinstance(bad, DeadLetter) and bad.reason == "invalid_ack" and "id" in (bad.detail or "")
    assert isinstance(parse("batteries/B1/cmd/ack", b" " * (256 * 1024 + 1), now), DeadLetter)
    assert parse("batteries/B1/status", b'{"online": true}', now) == Online("B1")
    assert parse("batteries/B1/status", b'{"online": true}', now, retained=True) is None
    assert parse("batteries/B1/status", b'{"online": false}', now) is None
    assert parse("batteries/B1/telemetry", b"{}", now) is None
    assert parse("elsewhere", b"{}", now) is None
