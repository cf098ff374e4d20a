"""Simulator data whose fade is known: the estimator's and the health job's test material."""

from __future__ import annotations

import functools

import numpy as np

from api.analytics import estimator as est
from device_sim.model import DEFAULT_PACKS, PARKED, FleetModel, PackSpec

HEALTHY = [100, 90, 80]
LEAKING, OVERHEATING = "leaking", "overheating"


class Simulated:
    """Two days of one-minute readings from the simulator: each pack type at 100, 90 and 80 % health,
    one pack that loses charge while parked (an internal short), one whose cooling failed."""

    def __init__(self, seed: int = 7) -> None:
        self.labels: list[object] = [h for h in HEALTHY for _ in DEFAULT_PACKS] + [LEAKING, OVERHEATING]
        self.specs = [DEFAULT_PACKS[k % 3] for k in range(9)] + [DEFAULT_PACKS[0], DEFAULT_PACKS[1]]
        model = FleetModel(self.specs, seed=seed)
        target = np.array([h if isinstance(h, int) else 100 for h in self.labels], dtype=float)
        model.cycles[:] = (1 - target / 100) / model.fade_per_cycle  # set each pack's age
        leak, hot = self.labels.index(LEAKING), self.labels.index(OVERHEATING)
        rows = []
        dt = 30.0
        for k in range(int(2 * 86400 / dt)):
            model.step(dt)
            if model.mode[leak] == PARKED:
                model.soc[leak] = max(0.0, model.soc[leak] - 1.0 * dt / 3600)  # 1 % an hour
            if model.current[hot] != 0:
                model.temperature[hot] += 0.02 * dt
            if k % 2 == 0:  # a reading a minute, rounded as a BMS sends it
                rows.append(
                    (
                        model.clock,
                        *(np.array(c) for c in zip(*model.readings(np.arange(model.n)), strict=True)),
                    )
                )
        self.t = np.array([r[0] for r in rows])
        self.columns = [np.array([r[c] for r in rows]) for c in range(1, 5)]  # V, A, SOC, °C (rows × packs)
        self.truth = model.soh
        self.resistance = model.resistance()

    def readings(self, j: int) -> est.Readings:
        v, i, soc, temp = (c[:, j] for c in self.columns)
        return est.Readings(self.t, v, i, soc, temp)


@functools.cache
def simulated() -> Simulated:
    """One simulation per test run (about two seconds)."""
    return Simulated()


def rating(spec: PackSpec) -> est.PackRating:
    found = est.pack_rating(
        chemistry=spec.chemistry,
        nominal_voltage=f"{spec.nominal_voltage:g} V",
        nominal_capacity=f"{spec.capacity_ah:g} Ah",
    )
    assert found is not None
    return found
