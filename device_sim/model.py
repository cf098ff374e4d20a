"""A fleet of battery packs as numpy arrays, stepped together: one step costs the same for 10 or 10,000.

Each pack: state of charge by coulomb counting, terminal voltage = OCV(SOC, chemistry) - I*R,
a duty cycle of riding, parked and charging, temperature rising with I^2*R heat, capacity fading
with equivalent full cycles, and a GPS position moving along a street-like route (routes.py).
Everything random comes from one seeded generator, and steps use the dt they are given (not the
wall clock), so the same seed and the same steps give the same readings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from device_sim.routes import Routes

Chemistry = Literal["Li-NMC", "LFP"]
CHEMISTRIES: tuple[Chemistry, ...] = ("Li-NMC", "LFP")

PARKED, RIDING, CHARGING = 0, 1, 2
MODE_NAMES = ("parked", "riding", "charging")

# Open-circuit voltage of one cell against SOC (%), strictly increasing. NMC slopes all the way;
# LFP is the famous flat plateau between 20 and 90 %.
_SOC_POINTS = np.array([0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100], dtype=float)
_CELL_OCV = {
    "Li-NMC": np.array([3.00, 3.30, 3.45, 3.57, 3.63, 3.68, 3.73, 3.80, 3.88, 3.96, 4.06, 4.12, 4.20]),
    "LFP": np.array([2.50, 3.00, 3.18, 3.23, 3.26, 3.28, 3.29, 3.30, 3.31, 3.33, 3.36, 3.40, 3.60]),
}
_CELL_NOMINAL_V = {"Li-NMC": 3.7, "LFP": 3.2}
# Internal resistance of one cell scaled by capacity (ohm * Ah): bigger cells, lower resistance.
_CELL_R_OHM_AH = {"Li-NMC": 0.22, "LFP": 0.10}
# Capacity lost per equivalent full cycle: NMC ~20 % by 1,000 cycles, LFP ~20 % by 2,500.
_FADE_PER_CYCLE = {"Li-NMC": 2.0e-4, "LFP": 0.8e-4}

THERMAL_MASS_J_PER_K = 15_000.0  # a ~15 kg pack
COOLING_W_PER_K = 3.0  # still air: a time constant of about 80 minutes


@dataclass(frozen=True)
class PackSpec:
    """What the battery-pack API calls the pack's specs, with the numbers the model needs."""

    model: str
    chemistry: Chemistry
    nominal_voltage: float
    capacity_ah: float
    cell_type: str = "Cylindrical"

    @property
    def series_cells(self) -> int:
        return max(1, round(self.nominal_voltage / _CELL_NOMINAL_V[self.chemistry]))

    @property
    def resistance_ohm(self) -> float:
        return self.series_cells * _CELL_R_OHM_AH[self.chemistry] / self.capacity_ah

    def ocv(self, soc: float) -> float:
        return self.series_cells * float(np.interp(soc, _SOC_POINTS, _CELL_OCV[self.chemistry]))


DEFAULT_PACKS = (
    PackSpec("Irasus 48V48", "Li-NMC", 48.0, 48.0, "Cylindrical"),
    PackSpec("Irasus 51V40", "LFP", 51.2, 40.0, "Prismatic"),
    PackSpec("Irasus 60V30", "Li-NMC", 60.0, 30.0, "Pouch"),
)

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def parse_spec(
    *, model: str | None, chemistry: str | None, nominal_voltage: str | None, capacity: str | None
) -> PackSpec | None:
    """A PackSpec from the database's text fields ("48 V", "40 Ah", "LFP"); None if they don't say."""
    if not chemistry or not nominal_voltage or not capacity:
        return None
    chem = chemistry.strip().upper().replace(" ", "")
    if chem in ("LFP", "LIFEPO4", "LI-FEPO4", "LIFEPO"):
        kind: Chemistry = "LFP"
    elif "NMC" in chem or chem in ("LI-ION", "LIION", "NCA"):
        kind = "Li-NMC"
    else:
        return None
    volts, amp_hours = _NUMBER.search(nominal_voltage), _NUMBER.search(capacity)
    if not volts or not amp_hours or float(volts[0]) <= 0 or float(amp_hours[0]) <= 0:
        return None
    return PackSpec(model or "unknown", kind, float(volts[0]), float(amp_hours[0]))


def ocv(soc: np.ndarray, chemistry: Chemistry, series_cells: np.ndarray | float) -> np.ndarray:
    """Pack open-circuit voltage for SOC values (%) of one chemistry."""
    return np.interp(soc, _SOC_POINTS, _CELL_OCV[chemistry]) * series_cells


class FleetModel:
    """The state of every simulated pack, one array element per battery."""

    def __init__(
        self,
        specs: list[PackSpec],
        *,
        seed: int = 0,
        city: tuple[float, float] = (12.9716, 77.5946),
        radius_km: float = 12.0,
        start_time: float = 0.0,
    ) -> None:
        n = len(specs)
        self.n = n
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.specs = specs
        self.chem_nmc = np.array([s.chemistry == "Li-NMC" for s in specs], dtype=bool)
        self.series = np.array([s.series_cells for s in specs], dtype=float)
        self.capacity_nominal_ah = np.array([s.capacity_ah for s in specs], dtype=float)
        self.r0_ohm = np.array([s.resistance_ohm for s in specs], dtype=float) * rng.uniform(0.9, 1.1, n)
        fade = np.array([_FADE_PER_CYCLE[s.chemistry] for s in specs])
        self.fade_per_cycle = fade * rng.uniform(0.8, 1.25, n)  # cell-to-cell spread
        # A fleet of mixed ages, so health analytics has differences to find from the first hour.
        self.cycles = rng.uniform(0, 600, n)
        self.soc = rng.uniform(30, 95, n)
        self.mode = rng.choice([PARKED, RIDING, CHARGING], size=n, p=[0.55, 0.35, 0.10]).astype(np.int8)
        self.mode_left_s = rng.uniform(0, 1800, n)
        self.charge_target = rng.uniform(90, 100, n)
        # Riding current: an Ornstein-Uhlenbeck process around the cruise current.
        self.ride_current = 0.35 * self.capacity_nominal_ah.copy()
        self.current = np.zeros(n)
        self.charge_enabled = np.ones(n, dtype=bool)
        self.discharge_enabled = np.ones(n, dtype=bool)
        self.routes = Routes(n, rng=rng, centre=city, radius_km=radius_km)
        self.clock = start_time  # model time, epoch seconds: drives the day's ambient temperature
        self._set_ambient()
        self.temperature = np.full(n, self.ambient_c) + rng.uniform(0, 3, n)
        self.voltage = np.zeros(n)
        self.throughput_ah = np.zeros(n)  # charge moved in or out, for the energy-balance check
        self._update_voltage()

    # Derived quantities.

    @property
    def capacity_ah(self) -> np.ndarray:
        return self.capacity_nominal_ah * np.clip(1.0 - self.fade_per_cycle * self.cycles, 0.5, 1.0)

    @property
    def soh(self) -> np.ndarray:
        """State of health: usable capacity as a percentage of nominal."""
        return 100.0 * self.capacity_ah / self.capacity_nominal_ah

    def ocv(self) -> np.ndarray:
        out = np.empty(self.n)
        groups: tuple[tuple[Chemistry, np.ndarray], ...] = (
            ("Li-NMC", self.chem_nmc),
            ("LFP", ~self.chem_nmc),
        )
        for chem, mask in groups:
            if mask.any():
                out[mask] = ocv(self.soc[mask], chem, self.series[mask])
        return out

    def resistance(self) -> np.ndarray:
        # Ageing raises resistance; so does the cold (and it falls a little when warm).
        aged = 1.0 + 2.0 * (1.0 - self.soh / 100.0)
        thermal = 1.0 + 0.015 * np.clip(25.0 - self.temperature, -10.0, 40.0)
        return self.r0_ohm * aged * thermal

    def _set_ambient(self) -> None:
        """Ambient temperature of a day in the city: coolest before dawn, warmest mid-afternoon."""
        local = (self.clock / 3600.0 + self.routes.centre[1] / 15.0) % 24.0
        self.ambient_c = 26.0 + 5.0 * math.sin(2 * math.pi * (local - 9.0) / 24.0)

    # The step.

    def step(self, dt: float) -> None:
        """Advance every pack by dt seconds."""
        if dt <= 0:
            return
        self.clock += dt
        self._set_ambient()
        self._transitions(dt)
        capacity = self.capacity_ah
        current = self._demand(dt, capacity)
        # Coulomb counting, with the current limited so SOC cannot leave 0..100: a BMS cuts off
        # an empty pack and a charger stops at full, and the charge balance stays exact.
        max_out = self.soc / 100.0 * capacity * 3600.0 / dt
        max_in = (100.0 - self.soc) / 100.0 * capacity * 3600.0 / dt
        current = np.clip(current, -max_in, max_out)
        self.current = current
        moved_ah = current * dt / 3600.0
        self.soc = np.clip(self.soc - 100.0 * moved_ah / capacity, 0.0, 100.0)
        self.throughput_ah += np.abs(moved_ah)
        self.cycles += np.abs(moved_ah) / (2.0 * self.capacity_nominal_ah)
        self._heat(dt, current)
        moving = (self.mode == RIDING) & (current > 0)
        self.routes.advance(dt, moving, np.clip(current / (0.35 * capacity), 0.3, 1.6))
        self._update_voltage()

    def _transitions(self, dt: float) -> None:
        rng, n = self.rng, self.n
        self.mode_left_s -= dt
        riding, parked, charging = self.mode == RIDING, self.mode == PARKED, self.mode == CHARGING
        # A rider heads for a charger when the pack runs low, whatever the plan was.
        low = riding & (self.soc < 12.0)
        full = charging & (self.soc >= self.charge_target)
        due = self.mode_left_s <= 0
        to_charge = low | (due & parked & (self.soc < 35.0))
        to_ride = due & parked & (self.soc >= 35.0)
        to_park = (due & riding & ~low) | full | (due & charging)  # due while charging: gave up
        ride_s = rng.uniform(8 * 60, 45 * 60, n)
        park_s = rng.uniform(5 * 60, 90 * 60, n)
        charge_s = np.full(n, 6 * 3600.0)  # a charger left plugged in, or given up on when disabled
        self.mode = np.where(to_charge, CHARGING, self.mode)
        self.mode = np.where(to_ride, RIDING, self.mode).astype(np.int8)
        self.mode = np.where(to_park & ~to_charge, PARKED, self.mode).astype(np.int8)
        self.mode_left_s = np.where(to_charge, charge_s, self.mode_left_s)
        self.mode_left_s = np.where(to_ride, ride_s, self.mode_left_s)
        self.mode_left_s = np.where(to_park & ~to_charge, park_s, self.mode_left_s)
        self.charge_target = np.where(to_charge, rng.uniform(90, 100, n), self.charge_target)
        started = to_ride
        if started.any():
            self.routes.new_trips(started)
            self.ride_current[started] = 0.35 * self.capacity_nominal_ah[started]

    def _demand(self, dt: float, capacity: np.ndarray) -> np.ndarray:
        """The current each pack is asked for (+ discharge, - charge) before BMS limits."""
        rng, n = self.rng, self.n
        c_rate = self.capacity_nominal_ah
        # Riding: stop-and-go traffic around a cruise of ~0.35 C, peaks near 2 C, brief regen.
        # Exact OU update for any dt: mean 0.35 C, stationary spread 0.3 C, memory of ~20 s.
        theta, mu, stationary_sd = 1 / 20.0, 0.35 * c_rate, 0.3 * c_rate
        decay = math.exp(-theta * dt)
        spread = stationary_sd * math.sqrt(1 - decay**2)
        self.ride_current = mu + (self.ride_current - mu) * decay + spread * rng.standard_normal(n)
        self.ride_current = np.clip(self.ride_current, -0.15 * c_rate, 2.0 * c_rate)
        ride = self.ride_current
        # Charging: constant current at 0.5 C to 80 %, then a tapering constant-voltage phase.
        taper = np.clip((100.0 - self.soc) / 20.0, 0.05, 1.0)
        charge = -0.5 * capacity * np.where(self.soc < 80.0, 1.0, taper)
        demand = np.where(self.mode == RIDING, ride, 0.0)
        demand = np.where(self.mode == CHARGING, charge, demand)
        # The BMS's switches: a pack disabled for discharging gives nothing (the vehicle stops,
        # so no regen either); one disabled for charging takes nothing.
        demand = np.where((demand > 0) & ~self.discharge_enabled, 0.0, demand)
        demand = np.where((self.mode == RIDING) & ~self.discharge_enabled, 0.0, demand)
        return np.where((demand < 0) & ~self.charge_enabled, 0.0, demand)

    def _heat(self, dt: float, current: np.ndarray) -> None:
        heat_w = current * current * self.resistance()
        steady = self.ambient_c + heat_w / COOLING_W_PER_K
        # Exact solution of C dT/dt = P - h (T - T_amb) over dt: stable for any step length.
        self.temperature = steady + (self.temperature - steady) * math.exp(
            -dt * COOLING_W_PER_K / THERMAL_MASS_J_PER_K
        )

    def _update_voltage(self) -> None:
        self.voltage = np.maximum(self.ocv() - self.current * self.resistance(), 0.0)

    # Commands.

    def set_enabled(
        self, index: int, *, charging: bool | None = None, discharging: bool | None = None
    ) -> None:
        if charging is not None:
            self.charge_enabled[index] = charging
        if discharging is not None:
            self.discharge_enabled[index] = discharging

    # Readings.

    def readings(self, indices: np.ndarray) -> list[tuple[float, float, float, float, float, float]]:
        """(voltage, current, soc, temperature, lat, lon) for the given packs, rounded like a BMS."""
        if len(indices) == 0:
            return []
        cols = (
            np.round(self.voltage[indices], 2),
            np.round(self.current[indices], 2),
            np.round(self.soc[indices], 1),
            np.round(self.temperature[indices], 1),
            np.round(self.routes.lat[indices], 6),
            np.round(self.routes.lon[indices], 6),
        )
        return list(zip(*(c.tolist() for c in cols), strict=True))
