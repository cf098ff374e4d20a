"""How suitable a technician is for a ticket: a 0-100 availability score (pure; no database).

The score is a weighted mean of five terms, each between 0 and 1:

    term         weight  value
    distance       30    1 - d / max_distance_km, d the haversine distance from the technician's home
                         to the ticket (its own coordinates, else its battery's last GPS fix); when
                         either point is unknown, 1 if both location names are the same, else 0
    skills         25    share of the skills the job needs that the technician has
    rating         20    rating / 5
    experience     10    min(years, 10) / 10
    load           15    1 - current_load / max_load (no open ticket: 1; at the limit: 0)

A term that cannot be judged (no place to measure from, no skill asked for) is left out and the
other weights are scaled up to 100, so scores stay comparable within one ranking. A technician is a
candidate (suitable) only below the load limit, with at least one needed skill when skills are
asked for, and within `max_distance_km` when the distance is known. Ties go to the lower load, then
the lower id, so a ranking is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

WEIGHTS = {"distance": 30.0, "skills": 25.0, "rating": 20.0, "experience": 10.0, "load": 15.0}
EXPERIENCE_CAP_YEARS = 10
EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)

# The skills an issue category calls for; a technician with any of them can take the ticket.
CATEGORY_SKILLS: dict[str, tuple[str, ...]] = {
    "performance": ("battery_maintenance", "diagnostics"),
    "charging": ("charging_systems", "electrical"),
    "electrical": ("electrical",),
    "mechanical": ("mechanical",),
    "other": ("battery_maintenance",),
}

ALGORITHM = (
    "Based on location proximity, skills match, rating, experience, and current workload: weighted "
    "mean of distance (30), skills (25), rating (20), experience (10) and load (15), 0-100"
)


@dataclass(frozen=True)
class Technician:
    """What the score looks at."""

    id: int
    skills: tuple[str, ...]
    rating: float
    experience_years: int
    current_load: int
    location: str | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True)
class Job:
    """Where the work is and which skills it needs (any of them will do)."""

    skills: tuple[str, ...] = ()
    location: str | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True)
class Scored:
    technician: Technician
    score: float
    distance_km: float | None
    terms: dict[str, float] = field(default_factory=dict)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two WGS84 points, in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _same_place(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


def score(tech: Technician, job: Job, *, max_load: int, max_distance_km: float) -> Scored:
    """The technician's score for this job (suitable or not; see `suitable`)."""
    terms: dict[str, float] = {}
    distance = None
    if None not in (tech.lat, tech.lon, job.lat, job.lon):
        distance = haversine_km(tech.lat, tech.lon, job.lat, job.lon)  # type: ignore[arg-type]
        terms["distance"] = max(0.0, 1.0 - distance / max_distance_km)
    elif job.location is not None and tech.location is not None:
        terms["distance"] = 1.0 if _same_place(tech.location, job.location) else 0.0
    if job.skills:
        held = set(tech.skills)
        terms["skills"] = sum(1 for s in job.skills if s in held) / len(job.skills)
    terms["rating"] = min(max(tech.rating, 0.0), 5.0) / 5.0
    terms["experience"] = min(max(tech.experience_years, 0), EXPERIENCE_CAP_YEARS) / EXPERIENCE_CAP_YEARS
    terms["load"] = max(0.0, 1.0 - tech.current_load / max_load)
    weight = sum(WEIGHTS[k] for k in terms)
    total = 100.0 * sum(WEIGHTS[k] * v for k, v in terms.items()) / weight
    return Scored(tech, round(total, 1), None if distance is None else round(distance, 2), terms)


def suitable(scored: Scored, job: Job, *, max_load: int, max_distance_km: float) -> bool:
    """May this technician take the job at all?"""
    if scored.technician.current_load >= max_load:
        return False
    if job.skills and scored.terms.get("skills", 0.0) == 0.0:
        return False
    return scored.distance_km is None or scored.distance_km <= max_distance_km


def rank(
    technicians: Iterable[Technician], job: Job, *, max_load: int, max_distance_km: float
) -> list[Scored]:
    """The suitable technicians, best first."""
    scored = [score(t, job, max_load=max_load, max_distance_km=max_distance_km) for t in technicians]
    fit = [s for s in scored if suitable(s, job, max_load=max_load, max_distance_km=max_distance_km)]
    return sorted(fit, key=lambda s: (-s.score, s.technician.current_load, s.technician.id))


def job_skills(issue_category: str | None, skill_required: str | None) -> tuple[str, ...]:
    """The skills asked for: the one named, else those of the ticket's category."""
    if skill_required:
        return (skill_required,)
    return CATEGORY_SKILLS.get(issue_category or "", ())


def reason(best: Scored, others: Sequence[Scored]) -> str:
    """Why the best was chosen, in the spec's words."""
    text = f"Selected based on highest score: {best.score}"
    if best.distance_km is not None:
        text += f" ({best.distance_km:.1f} km away, {best.technician.current_load} open tickets)"
    if others and others[0].score == best.score:
        text += "; tie broken by lower load, then lower id"
    return text
