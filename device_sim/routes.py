"""GPS positions of a fleet moving between homes and hubs along street-like (Manhattan) legs."""

from __future__ import annotations

import math

import numpy as np

M_PER_DEG_LAT = 111_320.0


class Routes:
    """Where each battery is and where its rider is heading, as arrays."""

    def __init__(
        self, n: int, *, rng: np.random.Generator, centre: tuple[float, float], radius_km: float
    ) -> None:
        self.n = n
        self.rng = rng
        self.centre = centre
        self.radius_m = radius_km * 1000.0
        self._m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(centre[0]))
        # Markets, offices, charging stations: the places trips go to and come back from.
        hubs = max(8, min(200, n // 20))
        self.hub_lat, self.hub_lon = self._points(hubs)
        self.home_lat, self.home_lon = self._points(n)
        self.lat, self.lon = self.home_lat.copy(), self.home_lon.copy()
        self.dest_lat, self.dest_lon = self.lat.copy(), self.lon.copy()
        self.north_first = rng.random(n) < 0.5
        self.cruise_mps = rng.uniform(5.5, 9.0, n)  # 20-32 km/h through city traffic

    def _points(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k points spread evenly over the disc around the centre."""
        r = self.radius_m * np.sqrt(self.rng.random(k))
        angle = self.rng.uniform(0, 2 * math.pi, k)
        lat = self.centre[0] + r * np.cos(angle) / M_PER_DEG_LAT
        lon = self.centre[1] + r * np.sin(angle) / self._m_per_deg_lon
        return lat, lon

    def new_trips(self, mask: np.ndarray) -> None:
        """Pick a destination for each battery in mask: a hub from home, home (mostly) from a hub."""
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return
        at_home = self._distance_m(idx, self.home_lat[idx], self.home_lon[idx]) < 300.0
        go_home = ~at_home & (self.rng.random(len(idx)) < 0.7)
        hub = self.rng.integers(0, len(self.hub_lat), len(idx))
        self.dest_lat[idx] = np.where(go_home, self.home_lat[idx], self.hub_lat[hub])
        self.dest_lon[idx] = np.where(go_home, self.home_lon[idx], self.hub_lon[hub])
        self.north_first[idx] = self.rng.random(len(idx)) < 0.5

    def _distance_m(self, idx: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        return np.hypot((lat - self.lat[idx]) * M_PER_DEG_LAT, (lon - self.lon[idx]) * self._m_per_deg_lon)

    def advance(self, dt: float, moving: np.ndarray, speed_factor: np.ndarray) -> None:
        """Move the riding batteries along their legs: first one axis, then the other."""
        if not moving.any():
            return
        step = np.where(moving, self.cruise_mps * speed_factor * dt, 0.0)
        north = (self.dest_lat - self.lat) * M_PER_DEG_LAT
        east = (self.dest_lon - self.lon) * self._m_per_deg_lon
        first = np.where(self.north_first, north, east)
        second = np.where(self.north_first, east, north)
        along_first = np.sign(first) * np.minimum(np.abs(first), step)
        rest = step - np.abs(along_first)
        along_second = np.sign(second) * np.minimum(np.abs(second), rest)
        d_north = np.where(self.north_first, along_first, along_second)
        d_east = np.where(self.north_first, along_second, along_first)
        self.lat = self.lat + d_north / M_PER_DEG_LAT
        self.lon = self.lon + d_east / self._m_per_deg_lon
        # Arrived with time left on the trip: run another errand.
        arrived = moving & (np.abs(north - d_north) < 1.0) & (np.abs(east - d_east) < 1.0)
        if arrived.any():
            self.new_trips(arrived)
