"""What a domain's scheduled job is, apart from the scheduler that runs it (packfleet/scheduler.py).

A leaf module: a domain's `jobs` module can import it without importing every other domain, as
the scheduler, the composition root, does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from apscheduler.triggers.base import BaseTrigger
from psycopg_pool import AsyncConnectionPool

from packfleet.settings import Settings


@dataclass(frozen=True)
class JobContext:
    """What a job is given: the scheduler process's pool and settings."""

    pool: AsyncConnectionPool
    settings: Settings


@dataclass(frozen=True)
class ScheduledJob:
    """One job of a domain: `id` is `<domain>.<name>`, `run` is called with the context."""

    id: str
    run: Callable[[JobContext], Awaitable[object]]
    trigger: BaseTrigger
    misfire_grace_s: int = 3600
