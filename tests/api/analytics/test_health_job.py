"""The health job against the real database: simulated packs' readings in `telemetry`, health
scores within 5 points of the truth, history, tickets for faults opened once, incremental runs,
two runs at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from api.analytics import estimator as est
from api.analytics import health
from packfleet.db import open_pool
from tests import factories
from tests.api.analytics.simulated import HEALTHY, LEAKING, OVERHEATING, Simulated, rating, simulated
from tests.conftest import make_settings


class Fleet:
    """The simulated packs as batteries of a dealer of their own, their readings not yet stored."""

    def __init__(self, db: psycopg.Connection, sim: Simulated) -> None:
        self.db, self.sim = db, sim
        self.dealer = factories.dealer(db, "Health Motors")
        self.ids: list[int] = []
        for spec in sim.specs:
            row = db.execute(
                """INSERT INTO batteries (serial_number, dealer_id, model, cell_chemistry, nominal_voltage,
                                          nominal_capacity)
                   VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
                (
                    factories.unique_serial("H"),
                    self.dealer["id"],
                    spec.model,
                    spec.chemistry,
                    f"{spec.nominal_voltage:g} V",
                    f"{spec.capacity_ah:g} Ah",
                ),
            ).fetchone()
            self.ids.append(row["id"])
        # the simulation's clock starts at 0: its last reading is now
        self.offset = datetime.now(UTC).timestamp() - float(sim.t[-1]) - 60

    def store(self, until_fraction: float, from_fraction: float = 0.0) -> None:
        """Readings of this share of the simulated time, and each battery's latest."""
        t = self.sim.t
        lo, hi = int(len(t) * from_fraction), int(len(t) * until_fraction)
        volts, amps, soc, temp = self.sim.columns
        with (
            self.db.cursor() as cur,
            cur.copy(
                "COPY telemetry (battery_id, ts, voltage, current, soc, temperature) FROM STDIN"
            ) as copy,
        ):
            for k in range(lo, hi):
                ts = datetime.fromtimestamp(float(t[k]) + self.offset, UTC)
                for j, battery in enumerate(self.ids):
                    copy.write_row((battery, ts, volts[k, j], amps[k, j], soc[k, j], temp[k, j]))
        last = datetime.fromtimestamp(float(t[hi - 1]) + self.offset, UTC)
        for j, battery in enumerate(self.ids):
            self.db.execute(
                """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (battery_id) DO UPDATE SET ts = EXCLUDED.ts""",
                (battery, last, volts[hi - 1, j], amps[hi - 1, j], soc[hi - 1, j]),
            )

    def tickets(self) -> list[dict[str, Any]]:
        return self.db.execute(
            """SELECT battery_id, auto_kind, description, source, status, priority FROM service_tickets
               WHERE battery_id = ANY(%s) ORDER BY battery_id, auto_kind""",
            (self.ids,),
        ).fetchall()

    def index(self, label: object) -> int:
        return self.sim.labels.index(label)


@pytest.fixture
def fleet(db: psycopg.Connection) -> Iterator[Fleet]:
    yield Fleet(db, simulated())


def run_job(database_url: str, times: int = 1, **overrides: Any) -> list[dict[str, Any]]:
    """The job as the scheduler runs it (its pool is not in autocommit), `times` at once."""
    settings = make_settings(database_url, **overrides)

    async def main() -> list[dict[str, Any]]:
        async with open_pool(database_url, name="test-health", max_size=2 * times) as pool:
            return list(await asyncio.gather(*(health.run(pool, settings) for _ in range(times))))

    return asyncio.run(main())


def test_health_scores_history_and_fault_tickets(
    database_url: str, fleet: Fleet, db: psycopg.Connection
) -> None:
    fleet.store(1.0)
    (done,) = run_job(database_url)
    assert done["batteries"] >= len(fleet.ids) and done["readings"] >= len(fleet.sim.t) * len(fleet.ids)
    rows = {
        r["id"]: r
        for r in db.execute(
            """SELECT b.id, b.health_score::float8 AS score, s.resistance_mohm, s.anomalies, h.day,
                      h.health::float8 FROM batteries b JOIN battery_health_state s ON s.battery_id = b.id
               LEFT JOIN battery_health_history h ON h.battery_id = b.id
               WHERE b.id = ANY(%s)""",
            (fleet.ids,),
        )
    }
    for j, label in enumerate(fleet.sim.labels):
        row = rows[fleet.ids[j]]
        if label in HEALTHY:
            assert abs(row["score"] - fleet.sim.truth[j]) <= 5.0, (label, row)
            assert row["anomalies"] == [] and row["day"] == datetime.now(UTC).date()
            assert row["resistance_mohm"] == pytest.approx(fleet.sim.resistance[j] * 1000, rel=0.25)
    tickets = fleet.tickets()
    assert [(t["battery_id"], t["auto_kind"]) for t in tickets] == sorted(
        [
            (fleet.ids[fleet.index(LEAKING)], "self_discharge"),
            (fleet.ids[fleet.index(OVERHEATING)], "over_temperature"),
        ]
    )
    assert all(t["source"] == "health" and t["priority"] == "high" for t in tickets)
    assert "while parked" in next(t for t in tickets if t["auto_kind"] == "self_discharge")["description"]
    # nothing new: nothing is read again and no ticket is opened twice
    (again,) = run_job(database_url)
    assert again["readings"] == 0 and again["tickets"] == 0
    assert len(fleet.tickets()) == 2


def test_crossing_the_service_threshold_opens_one_ticket(database_url: str, fleet: Fleet) -> None:
    fleet.store(0.6)
    run_job(database_url, health_service_threshold=85.0)
    low = {t["battery_id"] for t in fleet.tickets() if t["auto_kind"] == "low_health"}
    assert low == {fleet.ids[j] for j, label in enumerate(fleet.sim.labels) if label == 80}
    assert all(
        "below the service threshold of 85 %" in t["description"]
        for t in fleet.tickets()
        if t["auto_kind"] == "low_health"
    )
    fleet.store(1.0, from_fraction=0.6)  # more readings: still below, no second ticket
    run_job(database_url, health_service_threshold=85.0)
    assert {t["battery_id"] for t in fleet.tickets() if t["auto_kind"] == "low_health"} == low
    assert len([t for t in fleet.tickets() if t["auto_kind"] == "low_health"]) == len(low)


def test_incremental_runs_match_one_run(database_url: str, fleet: Fleet, db: psycopg.Connection) -> None:
    """Half the readings, a run, the rest, a run: the capacity found is the one of a single run over
    all of them (the first half's evidence has faded by a day, the same for charge and swing)."""
    fleet.store(0.5)
    run_job(database_url)
    fleet.store(1.0, from_fraction=0.5)
    (done,) = run_job(database_url)
    # only the second half (and what the resume points re-read) was read this time
    assert done["readings"] < 0.8 * len(fleet.sim.t) * len(fleet.ids)
    states = db.execute(
        """SELECT charge_ah, swing_pct FROM battery_health_state WHERE battery_id = ANY(%s)
           ORDER BY battery_id""",
        (fleet.ids,),
    ).fetchall()
    limits = health._limits(make_settings(database_url))
    for j, state in enumerate(states):
        once = est.estimate(fleet.sim.readings(j), rating(fleet.sim.specs[j]), limits).evidence
        assert state["charge_ah"] / state["swing_pct"] == pytest.approx(
            once.charge_ah / once.swing_pct, rel=0.01
        )


def test_two_runs_at_once_do_the_work_once(database_url: str, fleet: Fleet) -> None:
    fleet.store(1.0)
    results = run_job(database_url, times=2)
    assert sorted("skipped" in r for r in results) == [False, True]
    assert len(fleet.tickets()) == 2
