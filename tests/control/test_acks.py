"""The ack rules, pure: forward only, duplicates and strays change nothing, late acks still report,
and a command succeeds only when the device says it is in the commanded state."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from prometheus_client import REGISTRY

from control.acks import Ack, Report, fold
from control.inbound import DeadLetter, InboundWorker, Online, parse
from control.queries import Pool

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
        "sent_at": T0,
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
    assert out.reports == [Report(False, "discharging", T0 + timedelta(seconds=2))]
    assert out.device_enabled is False and out.latencies == [("received", 1.0), ("applied", 2.0)]
    assert out.contradictions == []


def test_applied_before_received_implies_delivery_and_the_late_received_is_ignored() -> None:
    out = fold(_command(), [_ack("applied", 1, enabled=False), _ack("received", 2)])
    assert out.status == "succeeded" and out.delivered_at == T0 + timedelta(seconds=1)
    assert out.device_enabled is False  # a disable, applied
    assert [why for _, why in out.ignored] == ["received while succeeded"]


def test_rejected_fails_with_the_error() -> None:
    out = fold(_command("delivered", delivered_at=T0), [_ack("rejected", 1, error="BMS fault", enabled=True)])
    assert out.status == "failed" and out.error == "BMS fault" and out.delivered_at == T0
    assert out.reports == [Report(True, "discharging", T0 + timedelta(seconds=1))]


@pytest.mark.parametrize("status", ["succeeded", "failed", "expired", "cancelled"])
def test_final_commands_never_move(status: str) -> None:
    command = _command(status, delivered_at=None, finished_at=T0)
    out = fold(command, [_ack("received", 1), _ack("applied", 2, enabled=False), _ack("rejected", 3)])
    assert not out.changed and out.status == status and out.finished_at == T0 and out.events == []
    assert len(out.ignored) == 3
    assert out.reports == [Report(False, "discharging", T0 + timedelta(seconds=2))]  # the device did apply it


def test_an_ack_on_another_batterys_topic_is_set_aside() -> None:
    out = fold(_command(), [_ack("applied", 1, serial="BAT2", enabled=False)])
    assert not out.changed and out.reports == [] and len(out.wrong_battery) == 1


def test_a_device_clock_in_the_future_does_not_push_the_report_ahead() -> None:
    ack = _ack("applied", 1, enabled=False, ts=T0 + timedelta(days=1))
    assert fold(_command(), [ack]).reports == [Report(False, "discharging", T0 + timedelta(seconds=1))]


def test_a_device_clock_that_reset_dates_its_report_no_earlier_than_the_command() -> None:
    ack = _ack("applied", 1, enabled=False, ts=datetime(1970, 1, 1, tzinfo=UTC))
    assert fold(_command(), [ack]).reports == [Report(False, "discharging", T0)]


@pytest.mark.parametrize(("action", "enabled"), [("disable", True), ("enable", False)])
def test_an_applied_ack_reporting_the_opposite_state_fails_the_command(action: str, enabled: bool) -> None:
    out = fold(_command(action=action), [_ack("received", 1), _ack("applied", 2, enabled=enabled)])
    assert out.status == "failed" and out.finished_at == T0 + timedelta(seconds=2)
    assert out.error is not None and "opposite state" in out.error
    assert f"reports it is {'enabled' if enabled else 'disabled'}" in out.error
    assert [e[0] for e in out.events] == ["delivered", "failed"] and out.events[-1][3] == out.error
    assert out.device_enabled is enabled
    assert out.reports == [Report(enabled, "discharging", T0 + timedelta(seconds=2))]  # what it now is
    assert [kind for _, kind, _ in out.contradictions] == ["opposite_state"]


def test_an_applied_ack_that_does_not_say_its_state_fails_and_reports_nothing() -> None:
    out = fold(_command(), [_ack("applied", 1)])
    assert out.status == "failed" and out.error is not None and "unconfirmed" in out.error
    assert out.reports == [] and out.device_enabled is None
    assert [kind for _, kind, _ in out.contradictions] == ["state_not_reported"]


@pytest.mark.parametrize("status", ["expired", "cancelled", "succeeded"])
def test_a_late_ack_reports_only_what_it_says(status: str) -> None:
    command = _command(status, finished_at=T0)
    assert fold(command, [_ack("applied", 1)]).reports == []  # no `enabled`: nothing is known
    late = fold(command, [_ack("applied", 1, enabled=True)])  # a disable the device says it did not do
    assert not late.changed and late.status == status
    assert late.reports == [Report(True, "discharging", T0 + timedelta(seconds=1))]
    assert [kind for _, kind, _ in late.contradictions] == ["opposite_state"]


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


def _worker(**bounds: int) -> InboundWorker:
    return InboundWorker(cast(Pool, None), wake_dispatcher=lambda: None, **bounds)  # put() needs no pool


def test_a_battery_saying_it_is_online_again_and_again_waits_once() -> None:
    worker = _worker()
    for _ in range(1000):
        worker.put("batteries/BAT1/status", b'{"online": true}')
    worker.put("batteries/BAT2/status", b'{"online": true}')
    assert worker.queue.qsize() == 2
    taken = [worker.queue.get_nowait(), worker.queue.get_nowait()]
    worker._taken(taken)
    worker.put("batteries/BAT1/status", b'{"online": true}')  # after it was taken it counts again
    assert [worker.queue.get_nowait()] == [Online("BAT1")]


def test_what_waits_for_the_database_is_bounded_in_messages_and_bytes() -> None:
    def dropped() -> float:
        sample = REGISTRY.get_sample_value("packfleet_control_inbound_dropped_total", {"kind": "dead_letter"})
        return sample or 0.0

    before = dropped()
    worker = _worker(max_unread=10)
    for _ in range(25):
        worker.put("batteries/BAT1/cmd/ack", b"not json")
    assert worker.queue.qsize() == 10
    assert dropped() == before + 15

    ack = json.dumps({"id": str(CMD), "stage": "received", "error": "x" * 300}).encode()
    worker = _worker(max_unread_bytes=1000)
    for _ in range(10):
        worker.put("batteries/BAT1/cmd/ack", ack)
    assert worker.queue.qsize() == 1000 // len(ack) + 1  # refused once the bound is reached
    assert worker.unread_bytes < 1000 + len(ack)
    worker._taken([worker.queue.get_nowait() for _ in range(worker.queue.qsize())])
    assert worker.unread_bytes == 0
    worker.put("batteries/BAT1/cmd/ack", ack)  # room again
    assert worker.queue.qsize() == 1
