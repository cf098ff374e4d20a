"""Fixtures of the service-desk tests: technicians with known skills and places, alone on duty."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests import factories

# Known places (WGS84) and the distances between them, from the haversine formula.
MG_ROAD = (12.9756, 77.6050)
WHITEFIELD = (12.9698, 77.7500)  # ~15.7 km east of MG Road
MYSURU = (12.2958, 76.6394)  # ~128 km south-west of MG Road


@pytest.fixture
def technician(db: psycopg.Connection) -> Callable[..., dict[str, Any]]:
    """Make technicians; those of earlier tests (the run shares one database) go off duty first."""
    db.execute("UPDATE technicians SET status = 'off_duty' WHERE status <> 'off_duty'")

    def make(
        name: str = "Tech",
        *,
        skills: tuple[str, ...] = ("battery_maintenance", "electrical", "charging_systems", "mechanical"),
        rating: float = 4.0,
        experience: int = 5,
        at: tuple[float, float] | None = MG_ROAD,
        location: str | None = "Bangalore Central",
        status: str = "available",
    ) -> dict[str, Any]:
        user = factories.user(db, "technician", name=name)
        db.execute(
            """INSERT INTO technicians (user_id, skills, rating, experience_years, location, latitude,
                                        longitude, status)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (user["id"], sorted(skills), rating, experience, location, *(at or (None, None)), status),
        )
        return user

    return make


def place_battery(db: psycopg.Connection, battery_id: int, at: tuple[float, float]) -> None:
    """Give the battery a last GPS fix."""
    db.execute(
        """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc, lat, lon)
           VALUES (%s, now(), 52, 0, 80, %s, %s)
           ON CONFLICT (battery_id) DO UPDATE SET lat = EXCLUDED.lat, lon = EXCLUDED.lon""",
        (battery_id, *at),
    )
