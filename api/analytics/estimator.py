"""A battery's state of health from its telemetry (pure numpy; no database).

Capacity, by coulomb counting over SOC swings. Within a run of readings without gaps (none longer
than `MAX_GAP_S`), the charge moved is the trapezoid integral of the current (+ discharge). Points
are the run's first reading and every reading where SOC enters another `LEVEL_PCT` band; between
two consecutive points the SOC moved by ΔSOC while ΔQ Ah flowed, and ΔSOC = -100·ΔQ / C. Each pair
adds -ΔQ·sign(ΔSOC) to a charge sum and |ΔSOC| to a swing sum, so that

    capacity = 100 · Σ(-ΔQ·sign ΔSOC) / Σ|ΔSOC|      (a |ΔSOC|-weighted mean of the pairs' C)
    health   = 100 · capacity / nominal capacity     (clipped to 0-100; the usual SOH definition)

Noise in the sampled current averages out over many pairs, and the charging pairs (smooth current)
are accurate on their own. The sums are kept between runs, fading with a memory of `MEMORY_DAYS`,
so health follows the pack's ageing; a run resumes from the last point of the one before, so each
pair is counted once. Pairs across a SOC jump of more than two bands (a BMS recalibration) are
skipped. Health is reported once the swings add up to `MIN_SWING_PCT`.

Internal resistance, from the voltage response to current steps: consecutive readings at most
`MAX_STEP_S` apart whose current changed by at least `STEP_C` of the nominal capacity and whose SOC
moved by at most 1 %: R = -ΔV/ΔI (the open-circuit voltage barely moves in between). The median of
those steps is the estimate, in ohm. It is reported beside health (it rises with age and with cold).

Anomalies in a run of readings:
- over_temperature: a reading above the configured maximum temperature;
- voltage_out_of_range: two or more readings outside the chemistry's cell window (× cells in series,
  2 % tolerance) — a single glitch is not a finding;
- self_discharge: SOC lost while parked (|current| ≤ `IDLE_C` of the capacity) in stretches of at
  least `MIN_PARKED_S`, faster than the configured %/day over at least `MIN_PARKED_TOTAL_S` parked.

Trend: the least-squares slope of daily health over time (points per day), and the days until it
reaches the service threshold at that slope (none while it fades by less than `MIN_FADE_PER_DAY`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

MAX_GAP_S = 300.0
LEVEL_PCT = 10.0
MIN_SWING_PCT = 50.0
MEMORY_DAYS = 30.0
MAX_STEP_S = 120.0
STEP_C = 0.1
IDLE_C = 0.02
MIN_PARKED_S = 1800.0
MIN_PARKED_TOTAL_S = 6 * 3600.0
VOLTAGE_TOLERANCE = 0.02
MIN_TREND_DAYS = 3
MIN_FADE_PER_DAY = 1e-3  # slower than ~0.4 points a year is no fade (and no forecast)


@dataclass(frozen=True)
class Chemistry:
    """One cell's voltages: nominal, and the window it must stay in."""

    nominal_v: float
    min_v: float
    max_v: float


CHEMISTRIES = {"nmc": Chemistry(3.7, 2.5, 4.25), "lfp": Chemistry(3.2, 2.0, 3.65)}
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class PackRating:
    """The pack's nameplate: capacity (Ah) and, when the chemistry is known, its voltage window."""

    capacity_ah: float
    chemistry: str | None = None
    series_cells: int | None = None

    @property
    def voltage_window(self) -> tuple[float, float] | None:
        if self.chemistry is None or self.series_cells is None:
            return None
        cell = CHEMISTRIES[self.chemistry]
        return (
            self.series_cells * cell.min_v * (1 - VOLTAGE_TOLERANCE),
            self.series_cells * cell.max_v * (1 + VOLTAGE_TOLERANCE),
        )


def _chemistry(text: str | None) -> str | None:
    if not text:
        return None
    name = text.strip().upper().replace(" ", "")
    if name in ("LFP", "LIFEPO4", "LI-FEPO4", "LIFEPO"):
        return "lfp"
    if "NMC" in name or name in ("LI-ION", "LIION", "NCA"):
        return "nmc"
    return None


def _first_number(text: str | None) -> float | None:
    found = _NUMBER.search(text or "")
    value = float(found[0]) if found else None
    return value if value is not None and 0 < value < 1e6 else None


def pack_rating(
    *, chemistry: str | None, nominal_voltage: str | None, nominal_capacity: str | None
) -> PackRating | None:
    """The rating from the battery's text fields ("Li-NMC", "48 V", "40 Ah"); None without a capacity."""
    capacity = _first_number(nominal_capacity)
    if capacity is None:
        return None
    chem = _chemistry(chemistry)
    volts = _first_number(nominal_voltage)
    if chem is None or volts is None:
        return PackRating(capacity)
    return PackRating(capacity, chem, max(1, round(volts / CHEMISTRIES[chem].nominal_v)))


@dataclass(frozen=True)
class Readings:
    """One battery's readings in time order: seconds, V, A (+ discharge), SOC %, °C (NaN: none)."""

    t: np.ndarray
    voltage: np.ndarray
    current: np.ndarray
    soc: np.ndarray
    temperature: np.ndarray

    def __len__(self) -> int:
        return len(self.t)


@dataclass(frozen=True)
class Anomaly:
    kind: str  # over_temperature, voltage_out_of_range, self_discharge
    detail: str


@dataclass(frozen=True)
class Limits:
    max_temperature_c: float
    self_discharge_pct_per_day: float


@dataclass(frozen=True)
class Estimate:
    """What one run of readings says."""

    charge_ah: float  # Σ -ΔQ·sign(ΔSOC) over the SOC swings
    swing_pct: float  # Σ |ΔSOC|
    last_point_t: float | None  # where the next run resumes
    resistance_ohm: float | None
    resistance_steps: int
    anomalies: tuple[Anomaly, ...]


def _runs(t: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges without a gap longer than MAX_GAP_S."""
    if len(t) == 0:
        return []
    cuts = np.flatnonzero(np.diff(t) > MAX_GAP_S) + 1
    edges = [0, *cuts.tolist(), len(t)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def coulomb_swings(r: Readings) -> tuple[float, float, float | None]:
    """(charge_ah, swing_pct, last point's time) over the SOC swings of these readings."""
    charge = swing = 0.0
    last_point: float | None = None
    for a, b in _runs(r.t):
        t, i, soc = r.t[a:b], r.current[a:b], r.soc[a:b]
        q = np.concatenate(([0.0], np.cumsum((i[1:] + i[:-1]) * 0.5 * np.diff(t)) / 3600.0))
        band = np.floor(np.clip(soc, 0.0, 100.0) / LEVEL_PCT)
        points = np.concatenate(([0], np.flatnonzero(np.diff(band) != 0) + 1))
        last_point = float(t[points[-1]])
        if len(points) < 2:
            continue
        d_soc = np.diff(soc[points])
        d_q = np.diff(q[points])
        keep = np.abs(d_soc) <= 2 * LEVEL_PCT
        charge += float(np.sum(-d_q[keep] * np.sign(d_soc[keep])))
        swing += float(np.sum(np.abs(d_soc[keep])))
    return charge, swing, last_point


def internal_resistance(r: Readings, capacity_ah: float) -> tuple[float | None, int]:
    """Median -ΔV/ΔI over the current steps (ohm), and how many steps there were."""
    if len(r) < 2:
        return None, 0
    dt, dv, di, dsoc = np.diff(r.t), np.diff(r.voltage), np.diff(r.current), np.diff(r.soc)
    steps = (dt <= MAX_STEP_S) & (np.abs(di) >= STEP_C * capacity_ah) & (np.abs(dsoc) <= 1.0)
    ohms = -dv[steps] / di[steps]
    ohms = ohms[np.isfinite(ohms) & (ohms > 0)]
    if len(ohms) == 0:
        return None, 0
    return float(np.median(ohms)), int(len(ohms))


def anomalies(r: Readings, rating: PackRating, limits: Limits) -> tuple[Anomaly, ...]:
    """What in these readings calls for a technician."""
    found: list[Anomaly] = []
    temps = r.temperature[np.isfinite(r.temperature)]
    if len(temps) and temps.max() > limits.max_temperature_c:
        found.append(
            Anomaly(
                "over_temperature",
                f"Temperature reached {temps.max():.1f} °C (limit {limits.max_temperature_c:g} °C)",
            )
        )
    window = rating.voltage_window
    if window is not None:
        outside = (r.voltage < window[0]) | (r.voltage > window[1])
        if outside.sum() >= 2:
            seen = r.voltage[outside]
            found.append(
                Anomaly(
                    "voltage_out_of_range",
                    f"{int(outside.sum())} readings outside {window[0]:.1f}-{window[1]:.1f} V for "
                    f"{rating.series_cells} {rating.chemistry} cells "
                    f"(seen {seen.min():.1f}-{seen.max():.1f} V)",
                )
            )
    rate = parked_self_discharge(r, rating.capacity_ah)
    if rate is not None and rate > limits.self_discharge_pct_per_day:
        found.append(
            Anomaly(
                "self_discharge",
                f"Losing {rate:.1f} % SOC a day while parked "
                f"(limit {limits.self_discharge_pct_per_day:g} %/day)",
            )
        )
    return tuple(found)


def parked_self_discharge(r: Readings, capacity_ah: float) -> float | None:
    """SOC lost per day while parked (%), over parked stretches of MIN_PARKED_S or more; None with
    less than MIN_PARKED_TOTAL_S of them."""
    idle = np.abs(r.current) <= IDLE_C * capacity_ah
    lost = parked = 0.0
    for a, b in _runs(r.t):
        flags = idle[a:b]
        edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):  # idle readings [start, stop)
            first, last = a + start, a + stop - 1
            span = r.t[last] - r.t[first]
            if span >= MIN_PARKED_S:
                lost += float(r.soc[first] - r.soc[last])
                parked += float(span)
    if parked < MIN_PARKED_TOTAL_S:
        return None
    return lost / parked * 86400.0


def estimate(r: Readings, rating: PackRating, limits: Limits) -> Estimate:
    """Everything one run of a battery's readings tells."""
    charge, swing, last_point = coulomb_swings(r)
    resistance, steps = internal_resistance(r, rating.capacity_ah)
    return Estimate(charge, swing, last_point, resistance, steps, anomalies(r, rating, limits))


def fade(sums: tuple[float, float], elapsed_s: float) -> tuple[float, float]:
    """Older evidence counts less: the sums after `elapsed_s` of memory loss."""
    keep = math.exp(-max(elapsed_s, 0.0) / (MEMORY_DAYS * 86400.0))
    return sums[0] * keep, sums[1] * keep


def health(charge_ah: float, swing_pct: float, rating: PackRating) -> float | None:
    """State of health (%) from the kept sums; None until the swings add up to MIN_SWING_PCT."""
    if swing_pct < MIN_SWING_PCT or charge_ah <= 0:
        return None
    capacity = 100.0 * charge_ah / swing_pct
    return float(min(100.0, max(0.0, 100.0 * capacity / rating.capacity_ah)))


@dataclass(frozen=True)
class Trend:
    per_day: float  # health points per day (negative: fading)
    days_to_threshold: float | None  # None when not fading; 0 when already below


def trend(days: np.ndarray, values: np.ndarray, threshold: float) -> Trend | None:
    """The straight-line trend of daily health and when it reaches the threshold; None with fewer
    than MIN_TREND_DAYS days."""
    if len(days) < MIN_TREND_DAYS or np.ptp(days) == 0:
        return None
    slope, intercept = np.polyfit(days.astype(float), values.astype(float), 1)
    now = float(values[np.argmax(days)])
    if now <= threshold:
        return Trend(float(slope), 0.0)
    if slope > -MIN_FADE_PER_DAY:
        return Trend(float(slope), None)
    return Trend(float(slope), (now - threshold) / -float(slope))
