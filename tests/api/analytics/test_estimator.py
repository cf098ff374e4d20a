"""The health estimator on its own (no database, no server): simulated packs whose fade is known,
injected faults, and properties of the maths."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.analytics import estimator as est
from tests.api.analytics.simulated import HEALTHY, LEAKING, OVERHEATING, Simulated, rating, simulated

LIMITS = est.Limits(max_temperature_c=60.0, self_discharge_pct_per_day=3.0)


@pytest.fixture(autouse=True)
def kept_pack_data_matches_the_packs() -> Iterator[None]:
    """These tests touch no database (the API tests' check after each test does not apply)."""
    yield


@pytest.fixture(scope="module", name="simulated")
def simulated_packs() -> Simulated:
    return simulated()


@pytest.mark.parametrize("target", HEALTHY)
def test_health_lands_within_5_points_of_the_simulated_truth(simulated: Simulated, target: int) -> None:
    for j, label in enumerate(simulated.labels):
        if label != target:
            continue
        pack = rating(simulated.specs[j])
        found = est.estimate(simulated.readings(j), pack, LIMITS)
        health = est.health(found.evidence, pack)
        assert health is not None and abs(health - simulated.truth[j]) <= 5.0, (simulated.specs[j], health)
        assert found.anomalies == () and est.self_discharge(found.evidence, LIMITS) is None


def test_resistance_follows_the_pack_s(simulated: Simulated) -> None:
    for j, label in enumerate(simulated.labels[:9]):
        ohm, steps = est.internal_resistance(simulated.readings(j), simulated.specs[j].capacity_ah)
        assert steps > 100 and ohm is not None
        assert ohm == pytest.approx(simulated.resistance[j], rel=0.2), (label, simulated.specs[j].model)
    by_age = [
        est.internal_resistance(simulated.readings(j), 48.0)[0] for j in (0, 3, 6)
    ]  # 48V48 at 100, 90, 80
    assert by_age == sorted(by_age)  # older packs are more resistive


def test_injected_faults_are_flagged(simulated: Simulated) -> None:
    leak, hot = simulated.labels.index(LEAKING), simulated.labels.index(OVERHEATING)
    leaking = est.estimate(simulated.readings(leak), rating(simulated.specs[leak]), LIMITS)
    assert leaking.anomalies == ()
    found = est.self_discharge(leaking.evidence, LIMITS)
    assert found is not None and found.kind == "self_discharge"
    assert 20 < leaking.evidence.parked_lost_pct / leaking.evidence.parked_s * 86400 < 28  # 1 %/h injected
    overheating = est.estimate(simulated.readings(hot), rating(simulated.specs[hot]), LIMITS)
    assert [a.kind for a in overheating.anomalies] == ["over_temperature"]
    assert est.self_discharge(overheating.evidence, LIMITS) is None


@pytest.mark.parametrize("runs", [2, 5, 48])
def test_runs_add_up_to_one_pass(simulated: Simulated, runs: int) -> None:
    """The job reads each battery in runs, each from the last one's resume point: the evidence adds
    up to reading everything at once."""
    j = 4
    pack = rating(simulated.specs[j])
    whole = simulated.readings(j)
    columns = (whole.t, whole.voltage, whole.current, whole.soc, whole.temperature)
    once = est.estimate(whole, pack, LIMITS).evidence
    total, after, resume = est.Evidence(), None, None
    for end in np.linspace(whole.t[0], whole.t[-1], runs + 1)[1:]:
        lo = 0 if resume is None else int(np.searchsorted(whole.t, resume))
        hi = int(np.searchsorted(whole.t, end, side="right"))
        part = est.Readings(*(c[lo:hi] for c in columns))
        found = est.estimate(part, pack, LIMITS, after=after)
        total, after, resume = total + found.evidence, float(part.t[-1]), found.resume_t
    assert total.charge_ah == pytest.approx(once.charge_ah, rel=1e-9)
    assert total.swing_pct == pytest.approx(once.swing_pct, rel=1e-9)
    # a stretch cut short at a run's end counts from where the next run starts judging it
    assert total.parked_s == pytest.approx(once.parked_s, rel=0.05)


def _flat(n: int, **columns: np.ndarray | float) -> est.Readings:
    t = np.arange(n) * 60.0
    cols = {"voltage": 50.0, "current": 0.0, "soc": 50.0, "temperature": 25.0, **columns}
    return est.Readings(t, *(np.broadcast_to(np.asarray(cols[k], dtype=float), (n,)).copy() for k in cols))


def test_voltage_out_of_its_chemistry_s_window() -> None:
    rating = est.pack_rating(chemistry="LFP", nominal_voltage="51.2 V", nominal_capacity="40 Ah")
    assert rating is not None and rating.series_cells == 16
    low, high = rating.voltage_window  # type: ignore[misc]
    assert low == pytest.approx(16 * 2.0 * 0.98) and high == pytest.approx(16 * 3.65 * 1.02)
    volts = np.full(100, 52.0)
    volts[40] = 70.0  # one glitch: not a finding
    assert est.reading_anomalies(_flat(100, voltage=volts), rating, LIMITS) == ()
    volts[41] = 70.0
    (found,) = est.reading_anomalies(_flat(100, voltage=volts), rating, LIMITS)
    assert found.kind == "voltage_out_of_range" and "16 lfp cells" in found.detail
    unknown = est.pack_rating(chemistry="sodium", nominal_voltage="48 V", nominal_capacity="40 Ah")
    assert unknown is not None and unknown.voltage_window is None
    assert est.reading_anomalies(_flat(100, voltage=volts), unknown, LIMITS) == ()


def test_pack_ratings_from_the_battery_fields() -> None:
    assert est.pack_rating(
        chemistry="Li-NMC", nominal_voltage="48 V", nominal_capacity="48 Ah"
    ) == est.PackRating(48.0, "nmc", 13)
    assert est.pack_rating(chemistry=None, nominal_voltage=None, nominal_capacity="30Ah") == est.PackRating(
        30.0
    )
    assert est.pack_rating(chemistry="LFP", nominal_voltage="51.2 V", nominal_capacity="unknown") is None
    assert est.pack_rating(chemistry="LFP", nominal_voltage="51.2 V", nominal_capacity="0 Ah") is None


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.floats(5, 300),
    c_rate=st.floats(0.05, 2.0),
    start=st.floats(60, 100),
    interval=st.sampled_from([10.0, 30.0, 60.0]),
    charging=st.booleans(),
)
def test_coulomb_counting_finds_the_capacity_of_a_steady_swing(
    capacity: float, c_rate: float, start: float, interval: float, charging: bool
) -> None:
    """A constant current and the SOC it gives: the estimate is the capacity."""
    amps = c_rate * capacity * (-1 if charging else 1)
    seconds = 0.5 * 3600 / c_rate  # half the pack
    t = np.arange(0, seconds + interval, interval)
    soc = (
        start - 100 * amps * t / 3600 / capacity
        if not charging
        else (start - 50) - 100 * amps * t / 3600 / capacity
    )
    readings = est.Readings(t, np.full(len(t), 50.0), np.full(len(t), amps), soc, np.full(len(t), np.nan))
    charge, swing, _ = est.coulomb_swings(readings)
    assert swing > 0
    assert 100 * charge / swing == pytest.approx(capacity, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(capacity=st.floats(10, 100), ohm=st.floats(0.005, 0.5), seed=st.integers(0, 2**16))
def test_resistance_from_current_steps_is_exact_without_ocv_drift(
    capacity: float, ohm: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    amps = rng.choice([0.0, 0.3, 1.0, -0.5], size=200) * capacity
    readings = _flat(200, current=amps, voltage=55.0 - amps * ohm)
    found, steps = est.internal_resistance(readings, capacity)
    if steps:
        assert found == pytest.approx(ohm, rel=1e-9)


def test_a_gap_breaks_the_count() -> None:
    """SOC that moved while the device was silent is not matched against a current never seen."""
    t = np.concatenate([np.arange(0, 600, 60.0), np.arange(3600, 4200, 60.0)])
    soc = np.concatenate([np.full(10, 90.0), np.full(10, 20.0)])
    readings = est.Readings(t, np.full(20, 50.0), np.zeros(20), soc, np.full(20, np.nan))
    assert est.coulomb_swings(readings)[:2] == (0.0, 0.0)


@given(charge=st.floats(0, 1e6), swing=st.floats(0, 1e6), capacity=st.floats(1, 500))
def test_health_is_a_percentage(charge: float, swing: float, capacity: float) -> None:
    found = est.health(est.Evidence(charge, swing), est.PackRating(capacity))
    assert found is None or 0.0 <= found <= 100.0
    if swing < est.MIN_SWING_PCT:
        assert found is None


def test_trend_and_days_to_the_threshold() -> None:
    days = np.arange(10)
    line = est.trend(days, 90 - 0.5 * days, threshold=70.0)
    assert line is not None
    assert line.per_day == pytest.approx(-0.5) and line.days_to_threshold == pytest.approx((85.5 - 70) / 0.5)
    assert est.trend(days, np.full(10, 90.0), 70.0).days_to_threshold is None  # type: ignore[union-attr]
    assert est.trend(days, np.full(10, 60.0), 70.0).days_to_threshold == 0.0  # type: ignore[union-attr]
    assert est.trend(days[:2], np.array([90.0, 89.0]), 70.0) is None


def test_faded_evidence() -> None:
    kept = est.Evidence(10.0, 20.0, 3.0, 4.0)
    assert kept.faded(0) == kept
    month = kept.faded(est.MEMORY_DAYS * 86400)
    assert month.charge_ah == pytest.approx(10 / np.e) and month.swing_pct == pytest.approx(20 / np.e)
    assert kept.faded(est.PARKED_MEMORY_DAYS * 86400).parked_s == pytest.approx(4 / np.e)
