"""The availability score, worked by hand for known technicians and places (no server)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.service import scoring
from api.service.scoring import Job, Technician
from tests.api.service.conftest import MG_ROAD, MYSURU, WHITEFIELD

LIMIT, REACH = 5, 50.0


@pytest.fixture(autouse=True)
def kept_pack_data_matches_the_packs() -> Iterator[None]:
    """These tests touch no database (the API tests' check after each test does not apply)."""
    yield


def _cosine_law_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The same great-circle distance by the spherical law of cosines (an independent formula)."""
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dl = math.radians(b[1] - a[1])
    return scoring.EARTH_RADIUS_KM * math.acos(
        math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    )


def test_haversine_on_known_places() -> None:
    assert scoring.haversine_km(*MG_ROAD, *MG_ROAD) == 0.0
    assert scoring.haversine_km(*MG_ROAD, *WHITEFIELD) == pytest.approx(
        _cosine_law_km(MG_ROAD, WHITEFIELD), rel=1e-9
    )
    assert 15.5 < scoring.haversine_km(*MG_ROAD, *WHITEFIELD) < 16.0
    assert 125 < scoring.haversine_km(*MG_ROAD, *MYSURU) < 131
    # a quarter of the equator
    assert scoring.haversine_km(0, 0, 0, 90) == pytest.approx(math.pi / 2 * scoring.EARTH_RADIUS_KM)


def test_scores_worked_by_hand() -> None:
    job = Job(
        skills=("battery_maintenance", "diagnostics"),
        location="Bangalore Central",
        lat=MG_ROAD[0],
        lon=MG_ROAD[1],
    )
    near = Technician(
        1,
        ("battery_maintenance",),
        rating=4.5,
        experience_years=3,
        current_load=2,
        lat=MG_ROAD[0],
        lon=MG_ROAD[1],
    )
    far = Technician(
        2, ("battery_maintenance", "diagnostics"), 4.0, 12, 0, lat=WHITEFIELD[0], lon=WHITEFIELD[1]
    )
    # near: distance 0 → 30, skills 1/2 → 12.5, rating 4.5/5 → 18, experience 3/10 → 3, load 1 - 2/5 → 9
    assert scoring.score(near, job, max_load=LIMIT, max_distance_km=REACH).score == 72.5
    # far: distance 1 - d/50 → 30 (1 - d/50), skills 25, rating 16, experience capped at 10, load 15
    d = _cosine_law_km(MG_ROAD, WHITEFIELD)
    expected = round(30 * (1 - d / 50) + 25 + 16 + 10 + 15, 1)
    scored = scoring.score(far, job, max_load=LIMIT, max_distance_km=REACH)
    assert scored.score == expected and scored.distance_km == round(d, 2)
    ranked = scoring.rank([near, far], job, max_load=LIMIT, max_distance_km=REACH)
    assert [s.technician.id for s in ranked] == [2, 1]
    assert scoring.reason(ranked[0], ranked[1:]).startswith(f"Selected based on highest score: {expected}")


def test_unknown_terms_are_left_out_and_the_rest_scaled_to_100() -> None:
    tech = Technician(1, (), rating=5.0, experience_years=10, current_load=0)
    # no place and no skill asked: rating, experience and load only, all perfect
    assert scoring.score(tech, Job(), max_load=LIMIT, max_distance_km=REACH).score == 100.0
    # a place named but no coordinates: the names decide the distance term
    elsewhere = Technician(2, (), 5.0, 10, 0, location="Mysuru")
    assert scoring.score(
        elsewhere, Job(location="Bangalore Central"), max_load=LIMIT, max_distance_km=REACH
    ).score == round(100 * 45 / 75, 1)
    same = Technician(3, (), 5.0, 10, 0, location=" bangalore central ")
    assert (
        scoring.score(same, Job(location="Bangalore Central"), max_load=LIMIT, max_distance_km=REACH).score
        == 100.0
    )


def test_who_is_not_suitable() -> None:
    job = Job(skills=("electrical",), lat=MG_ROAD[0], lon=MG_ROAD[1])
    full = Technician(1, ("electrical",), 5, 10, LIMIT, lat=MG_ROAD[0], lon=MG_ROAD[1])
    unskilled = Technician(2, ("mechanical",), 5, 10, 0, lat=MG_ROAD[0], lon=MG_ROAD[1])
    too_far = Technician(3, ("electrical",), 5, 10, 0, lat=MYSURU[0], lon=MYSURU[1])
    fine = Technician(4, ("electrical",), 1, 0, LIMIT - 1, lat=WHITEFIELD[0], lon=WHITEFIELD[1])
    ranked = scoring.rank([full, unskilled, too_far, fine], job, max_load=LIMIT, max_distance_km=REACH)
    assert [s.technician.id for s in ranked] == [4]


def test_ties_go_to_the_lower_load_then_the_lower_id() -> None:
    a = Technician(7, (), 4.0, 5, 1)
    b = Technician(3, (), 4.0, 5, 1)
    ranked = scoring.rank([a, b], Job(), max_load=LIMIT, max_distance_km=REACH)
    assert [s.technician.id for s in ranked] == [3, 7]
    assert "tie broken" in scoring.reason(ranked[0], ranked[1:])


def test_category_skills() -> None:
    assert scoring.job_skills("charging", None) == ("charging_systems", "electrical")
    assert scoring.job_skills("charging", "welding") == ("welding",)
    assert set(scoring.CATEGORY_SKILLS) == {"performance", "charging", "mechanical", "electrical", "other"}


coordinates = st.tuples(st.floats(-90, 90), st.floats(-180, 180))
technicians = st.builds(
    Technician,
    id=st.integers(1, 10**6),
    skills=st.lists(st.sampled_from(["electrical", "mechanical", "diagnostics"]), max_size=3).map(tuple),
    rating=st.floats(0, 5),
    experience_years=st.integers(0, 60),
    current_load=st.integers(0, LIMIT),
    lat=st.none() | st.floats(-90, 90),
    lon=st.floats(-180, 180),
)


@given(technicians, coordinates, st.lists(st.sampled_from(["electrical", "mechanical"]), max_size=2))
def test_scores_are_between_0_and_100(
    tech: Technician, point: tuple[float, float], skills: list[str]
) -> None:
    if tech.lat is None:
        tech = Technician(tech.id, tech.skills, tech.rating, tech.experience_years, tech.current_load)
    scored = scoring.score(
        tech, Job(tuple(skills), lat=point[0], lon=point[1]), max_load=LIMIT, max_distance_km=REACH
    )
    assert 0.0 <= scored.score <= 100.0
    if scored.distance_km is not None:
        assert 0.0 <= scored.distance_km <= math.pi * scoring.EARTH_RADIUS_KM + 1e-6


@given(technicians, st.integers(0, LIMIT - 1))
def test_more_load_never_scores_higher(tech: Technician, load: int) -> None:
    job = Job(("electrical",), lat=12.0, lon=77.0)
    less = Technician(
        tech.id,
        tech.skills,
        tech.rating,
        tech.experience_years,
        load,
        lat=tech.lat,
        lon=tech.lon if tech.lat is not None else None,
    )
    more = Technician(
        less.id, less.skills, less.rating, less.experience_years, load + 1, lat=less.lat, lon=less.lon
    )
    s = scoring.score(less, job, max_load=LIMIT, max_distance_km=REACH).score
    assert scoring.score(more, job, max_load=LIMIT, max_distance_km=REACH).score <= s
