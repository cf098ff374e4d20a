"""The battery model on its own: physics invariants, commands' effect, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

from device_sim.faults import Faults, FaultSpecError
from device_sim.model import CHARGING, DEFAULT_PACKS, PARKED, RIDING, FleetModel, PackSpec, ocv, parse_spec
from device_sim.routes import M_PER_DEG_LAT

BENGALURU = (12.9716, 77.5946)


def fleet(n: int = 300, seed: int = 1) -> FleetModel:
    return FleetModel([DEFAULT_PACKS[i % 3] for i in range(n)], seed=seed, city=BENGALURU)


def test_soc_stays_within_0_and_100_through_days_of_duty_cycles() -> None:
    model = fleet()
    seen_modes = set()
    for dt in [10.0] * 3000 + [900.0] * 200:  # eight hours at 10 s, then two days in big steps
        model.step(dt)
        seen_modes.update(np.unique(model.mode).tolist())
        assert model.soc.min() >= 0.0 and model.soc.max() <= 100.0
    assert seen_modes == {PARKED, RIDING, CHARGING}
    assert np.isfinite(model.voltage).all() and np.isfinite(model.temperature).all()


def test_charge_balance_coulomb_counting_is_exact() -> None:
    model = fleet()
    drawn_ah = stored_ah = 0.0
    for _ in range(2000):
        soc_before, capacity_before = model.soc.copy(), model.capacity_ah.copy()
        model.step(10.0)
        drawn_ah += float((model.current * 10.0 / 3600.0).sum())
        stored_ah += float(((soc_before - model.soc) / 100.0 * capacity_before).sum())
    assert drawn_ah != 0.0
    assert drawn_ah == pytest.approx(stored_ah, rel=1e-9, abs=1e-6)


def test_terminal_voltage_is_ocv_minus_ir_so_losses_are_never_negative() -> None:
    model = fleet()
    for _ in range(500):
        model.step(10.0)
        gap = model.ocv() - model.voltage  # I*R: positive when discharging, negative when charging
        assert np.allclose(gap, model.current * model.resistance())
        assert (gap * model.current >= -1e-9).all()  # power lost in R: I^2 R >= 0


@pytest.mark.parametrize("chemistry", ["Li-NMC", "LFP"])
def test_ocv_rises_strictly_with_soc(chemistry: str) -> None:
    soc = np.linspace(0, 100, 1001)
    volts = ocv(soc, chemistry, 1.0)  # type: ignore[arg-type]
    assert (np.diff(volts) > 0).all()


def test_pack_specs_give_realistic_voltages() -> None:
    nmc48, lfp, _ = DEFAULT_PACKS
    assert nmc48.series_cells == 13 and lfp.series_cells == 16
    assert 46 <= nmc48.ocv(50) <= 50 and nmc48.ocv(100) == pytest.approx(54.6)
    assert 51 <= lfp.ocv(50) <= 54 and lfp.ocv(100) == pytest.approx(57.6)
    assert 0.02 < nmc48.resistance_ohm < 0.1


def test_disabled_discharging_means_no_discharge_current_and_no_movement() -> None:
    model = fleet()
    model.discharge_enabled[:] = False
    lat, lon = model.routes.lat.copy(), model.routes.lon.copy()
    riding_seen = 0
    for _ in range(1000):
        model.step(10.0)
        assert (model.current <= 0).all()
        assert (model.current[model.mode == RIDING] == 0).all()
        riding_seen += int((model.mode == RIDING).sum())
    assert riding_seen > 0
    assert (model.routes.lat == lat).all() and (model.routes.lon == lon).all()


def test_disabled_charging_means_no_charge_current() -> None:
    model = fleet()
    model.charge_enabled[:] = False
    charging_seen = 0
    for _ in range(2000):
        model.step(10.0)
        assert (model.current >= 0).all()
        charging_seen += int((model.mode == CHARGING).sum())
    assert charging_seen > 0


def test_enabling_again_restores_riding_current() -> None:
    model = fleet()
    model.set_enabled(0, discharging=False)
    model.set_enabled(0, discharging=True)
    model.mode[:] = RIDING
    model.mode_left_s[:] = 1e6
    model.soc[:] = 90.0
    model.step(10.0)
    assert (model.current > 0).mean() > 0.8


def test_same_seed_same_fleet_other_seed_other_fleet() -> None:
    a, b, c = fleet(seed=7), fleet(seed=7), fleet(seed=8)
    for _ in range(300):
        for m in (a, b, c):
            m.step(10.0)
    idx = np.arange(a.n)
    assert a.readings(idx) == b.readings(idx)
    assert a.readings(idx) != c.readings(idx)


def test_temperature_rises_with_current() -> None:
    model = FleetModel([DEFAULT_PACKS[0]] * 2, seed=3, city=BENGALURU)
    model.mode[:] = [RIDING, PARKED]
    model.mode_left_s[:] = 1e9
    model.soc[:] = 100.0
    model.temperature[:] = model.ambient_c
    for _ in range(180):  # half an hour
        model.step(10.0)
    assert model.temperature[0] > model.temperature[1] + 2.0
    assert model.temperature[1] == pytest.approx(model.ambient_c, abs=1.0)


def test_capacity_fades_with_cycles() -> None:
    model = fleet()
    soh_before, cycles_before = model.soh.copy(), model.cycles.copy()
    for _ in range(500):
        model.step(600.0)
    worked = model.cycles > cycles_before + 1
    assert worked.mean() > 0.9
    assert (model.soh[worked] < soh_before[worked]).all()
    # a fleet of mixed ages from the start, so health analytics has something to find
    assert soh_before.max() - soh_before.min() > 5


def test_gps_moves_riders_along_plausible_routes_near_the_city() -> None:
    model = fleet()
    for _ in range(720):  # two hours
        lat0, lon0 = model.routes.lat.copy(), model.routes.lon.copy()
        model.step(10.0)
        metres = np.hypot(
            (model.routes.lat - lat0) * M_PER_DEG_LAT,
            (model.routes.lon - lon0) * M_PER_DEG_LAT * math.cos(math.radians(BENGALURU[0])),
        )
        assert metres.max() <= 16 * 10.0  # under ~58 km/h, even in a burst
        assert (metres[model.mode != RIDING] == 0).all()
    dist_km = np.hypot(model.routes.lat - BENGALURU[0], model.routes.lon - BENGALURU[1]) * 111.3
    assert dist_km.max() < 20
    assert (model.routes.lat != model.routes.home_lat).any()


def test_parse_spec_reads_the_databases_text_fields() -> None:
    assert parse_spec(model="X", chemistry="Li-NMC", nominal_voltage="48 V", capacity="48 Ah") == PackSpec(
        "X", "Li-NMC", 48.0, 48.0
    )
    assert (
        parse_spec(model=None, chemistry="LFP", nominal_voltage="51.2V", capacity="40Ah").chemistry == "LFP"
    )
    assert parse_spec(model="X", chemistry="lead-acid", nominal_voltage="48 V", capacity="48 Ah") is None
    assert parse_spec(model="X", chemistry="LFP", nominal_voltage=None, capacity="48 Ah") is None


def test_fault_spec_parses_rates_and_parameters() -> None:
    faults = Faults.parse("drop_ack=0.1, delay-ack=0.2:8,reject=0.05,flap=0.01:30,skew=0.5,backlog=0.01:50")
    assert faults.drop_ack == 0.1 and faults.delay_ack == 0.2 and faults.delay_ack_max_s == 8
    assert faults.flap_offline_max_s == 30 and faults.backlog_readings == 50 and faults.skew == 0.5
    assert Faults.parse("") == Faults()
    for bad in ("explode=0.1", "drop_ack=2", "drop_ack", "reject=0.1:5", "flap=x"):
        with pytest.raises(FaultSpecError):
            Faults.parse(bad)
