"""What a device's (enabled, spec) pair means, and the status a battery shows for it."""

from __future__ import annotations

import itertools

import psycopg
import pytest

from schemas import state

PAIRS = list(itertools.product([True, False], ["charging", "discharging", "both"]))


@pytest.mark.parametrize(("enabled", "spec"), PAIRS)
def test_every_pair_has_one_canonical_form(enabled: bool, spec: str) -> None:
    switches = state.switches(enabled, spec)
    assert state.switches(*state.canonical(switches)) == switches


def test_a_command_leaves_the_switch_it_does_not_name() -> None:
    off = state.after_command((True, True), enable=False, spec="charging")
    assert off == (False, True) and state.canonical(off) == (False, "charging")
    both_off = state.after_command(off, enable=False, spec="discharging")
    assert state.canonical(both_off) == (False, "both")  # as the device then reports it
    assert state.after_command(both_off, enable=True, spec="both") == (True, True)
    assert state.after_command(None, enable=False, spec="discharging") == (True, False)


def test_in_sync_compares_switches_and_is_false_before_any_report() -> None:
    assert state.in_sync((False, "charging"), (True, "discharging"))  # the same switches
    assert not state.in_sync((False, "both"), (False, "charging"))  # it still discharges
    assert not state.in_sync((True, "both"), (None, None))


def test_a_battery_is_active_while_it_can_discharge() -> None:
    assert state.status_of((False, True), wanted="inactive") == "active"  # only charging is off
    assert state.status_of((True, False), wanted=None) == "inactive"
    assert state.status_of((False, False), wanted="maintenance") == "maintenance"
    assert state.status_of((False, False), wanted=None, current="maintenance") == "maintenance"
    assert state.status_of((False, False), wanted="active", current="active") == "inactive"


def test_the_batteries_table_keeps_the_same_switches(db: psycopg.Connection) -> None:
    """Migration 0037's columns, which readers in SQL use, say what this module says."""
    cases = list(itertools.product(PAIRS, [*PAIRS, (None, None), (True, None)]))
    with db.transaction(force_rollback=True):
        rows = db.execute(
            """INSERT INTO batteries (serial_number, desired_enabled, desired_spec, reported_enabled,
                                      reported_spec)
               SELECT 'SWITCHES-' || n, de, ds, re, rs
               FROM unnest(%s::boolean[], %s::text[], %s::boolean[], %s::text[])
                    WITH ORDINALITY AS c(de, ds, re, rs, n)
               RETURNING desired_charging, desired_discharging, reported_charging,
                         reported_discharging, in_sync, serial_number""",
            [
                [d[0] for d, _ in cases],
                [d[1] for d, _ in cases],
                [r[0] for _, r in cases],
                [r[1] for _, r in cases],
            ],
        ).fetchall()
    stored = {r.pop("serial_number"): tuple(r.values()) for r in rows}
    for n, (desired, report) in enumerate(cases, 1):
        expected = (None, None) if report[0] is None else state.switches(report[0], report[1])
        assert stored[f"SWITCHES-{n}"] == (
            *state.switches(*desired),
            *expected,
            state.in_sync(desired, report),
        )
