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

Anomalies:
- over_temperature: a reading above the configured maximum temperature;
- voltage_out_of_range: two or more readings outside the chemistry's cell window (× cells in series,
  2 % tolerance) — a single glitch is not a finding;
- self_discharge: SOC lost while parked (|current| ≤ `IDLE_C` of the capacity) in stretches of at
  least `MIN_PARKED_S`, faster than the configured %/day, over at least `MIN_PARKED_TOTAL_S` of
  parking kept with a memory of `PARKED_MEMORY_DAYS`.

Runs are incremental: each reads from the previous run's `resume_t` (its last swing point, or the
start of a parked stretch still going) and counts only what ends after the previous run's newest
reading, so processing readings in several runs adds up to processing them in one.

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
PARKED_MEMORY_DAYS = 3.0
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
class Evidence:
    """The sums kept between runs: coulomb count over SOC swings, SOC lost while parked."""

    charge_ah: float = 0.0  # Σ -ΔQ·sign(ΔSOC)
    swing_pct: float = 0.0  # Σ |ΔSOC|
    parked_lost_pct: float = 0.0
    parked_s: float = 0.0

    def __add__(self, other: Evidence) -> Evidence:
        return Evidence(
            self.charge_ah + other.charge_ah,
            self.swing_pct + other.swing_pct,
            self.parked_lost_pct + other.parked_lost_pct,
            self.parked_s + other.parked_s,
        )

    def faded(self, elapsed_s: float) -> Evidence:
        """Older evidence counts less: swings fade over MEMORY_DAYS, parking over PARKED_MEMORY_DAYS."""
        elapsed = max(elapsed_s, 0.0)
        swings = math.exp(-elapsed / (MEMORY_DAYS * 86400.0))
        parking = math.exp(-elapsed / (PARKED_MEMORY_DAYS * 86400.0))
        return Evidence(
            self.charge_ah * swings,
            self.swing_pct * swings,
            self.parked_lost_pct * parking,
            self.parked_s * parking,
        )


@dataclass(frozen=True)
class Estimate:
    """What one run of readings adds."""

    evidence: Evidence
    resume_t: float | None  # where the next run must start reading (see `estimate`)
    resistance_ohm: float | None
    resistance_steps: int
    anomalies: tuple[Anomaly, ...]  # over-temperature and voltage, in the new readings


def _runs(t: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges without a gap longer than MAX_GAP_S."""
    if len(t) == 0:
        return []
    cuts = np.flatnonzero(np.diff(t) > MAX_GAP_S) + 1
    edges = [0, *cuts.tolist(), len(t)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def coulomb_swings(r: Readings, after: float = -math.inf) -> tuple[float, float, float | None]:
    """(charge_ah, swing_pct, last point's time) over the SOC swings that end after `after`."""
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
        keep = (np.abs(d_soc) <= 2 * LEVEL_PCT) & (t[points[1:]] > after)
        charge += float(np.sum(-d_q[keep] * np.sign(d_soc[keep])))
        swing += float(np.sum(np.abs(d_soc[keep])))
    return charge, swing, last_point


def parked(r: Readings, capacity_ah: float, after: float = -math.inf) -> tuple[float, float, float | None]:
    """(SOC lost %, seconds) while parked after `after`, in stretches of at least MIN_PARKED_S, and the
    start of a stretch still going at the end (a later run must see all of it)."""
    idle = np.abs(r.current) <= IDLE_C * capacity_ah
    lost = seconds = 0.0
    ongoing: float | None = None
    for a, b in _runs(r.t):
        edges = np.flatnonzero(np.diff(np.concatenate(([0], idle[a:b].astype(np.int8), [0]))))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):  # idle readings [start, stop)
            first, last = a + start, a + stop - 1
            if b == len(r.t) and stop == b - a:
                ongoing = float(r.t[first])
            if r.t[last] - r.t[first] < MIN_PARKED_S or r.t[last] <= after:
                continue
            first = max(first, int(np.searchsorted(r.t, after, side="left")))  # this run's part only
            lost += float(r.soc[first] - r.soc[last])
            seconds += float(r.t[last] - r.t[first])
    return lost, seconds, ongoing


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


def reading_anomalies(r: Readings, rating: PackRating | None, limits: Limits) -> tuple[Anomaly, ...]:
    """Over-temperature and voltage out of the chemistry's window in these readings."""
    found: list[Anomaly] = []
    temps = r.temperature[np.isfinite(r.temperature)]
    if len(temps) and temps.max() > limits.max_temperature_c:
        found.append(
            Anomaly(
                "over_temperature",
                f"Temperature reached {temps.max():.1f} °C (limit {limits.max_temperature_c:g} °C)",
            )
        )
    window = rating.voltage_window if rating is not None else None
    if window is not None:
        outside = (r.voltage < window[0]) | (r.voltage > window[1])
        if outside.sum() >= 2:
            seen = r.voltage[outside]
            found.append(
                Anomaly(
                    "voltage_out_of_range",
                    f"{int(outside.sum())} readings outside {window[0]:.1f}-{window[1]:.1f} V for "
                    f"{rating.series_cells} {rating.chemistry} cells "  # type: ignore[union-attr]
                    f"(seen {seen.min():.1f}-{seen.max():.1f} V)",
                )
            )
    return tuple(found)


def _since(r: Readings, after: float) -> Readings:
    k = int(np.searchsorted(r.t, after, side="right"))
    return Readings(r.t[k:], r.voltage[k:], r.current[k:], r.soc[k:], r.temperature[k:])


def estimate(
    r: Readings, rating: PackRating | None, limits: Limits, *, after: float | None = None
) -> Estimate:
    """What a run of a battery's readings adds to its evidence. `after` is the newest reading of the
    run before (None for the first): only what ends after it is new. The readings must start at the
    previous run's `resume_t` (or earlier), so that each SOC swing and parked stretch is counted once."""
    bound = -math.inf if after is None else after
    new = r if after is None else _since(r, after)
    if rating is None:  # without the nameplate capacity only the temperature can be judged
        return Estimate(Evidence(), None, None, 0, reading_anomalies(new, None, limits))
    charge, swing, last_point = coulomb_swings(r, bound)
    lost, seconds, ongoing = parked(r, rating.capacity_ah, bound)
    resistance, steps = internal_resistance(new, rating.capacity_ah)
    resume = min((p for p in (last_point, ongoing) if p is not None), default=None)
    return Estimate(
        Evidence(charge, swing, lost, seconds),
        resume,
        resistance,
        steps,
        reading_anomalies(new, rating, limits),
    )


def self_discharge(evidence: Evidence, limits: Limits) -> Anomaly | None:
    """Abnormal self-discharge while parked, from the kept evidence (None if normal or too little)."""
    if evidence.parked_s < MIN_PARKED_TOTAL_S:
        return None
    rate = evidence.parked_lost_pct / evidence.parked_s * 86400.0
    if rate <= limits.self_discharge_pct_per_day:
        return None
    return Anomaly(
        "self_discharge",
        f"Losing {rate:.1f} % SOC a day while parked (limit {limits.self_discharge_pct_per_day:g} %/day)",
    )


def health(evidence: Evidence, rating: PackRating) -> float | None:
    """State of health (%) from the kept sums; None until the swings add up to MIN_SWING_PCT."""
    if evidence.swing_pct < MIN_SWING_PCT or evidence.charge_ah <= 0:
        return None
    capacity = 100.0 * evidence.charge_ah / evidence.swing_pct
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
