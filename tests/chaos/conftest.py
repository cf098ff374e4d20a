"""The chaos run's stack (one per module) and its summary table at the end of the session.

PACKFLEET_CHAOS_BATTERIES (default 1000: the release check) and PACKFLEET_CHAOS_INTERVAL (seconds
between a battery's readings, default 5) size the fleet; use a few dozen while developing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests import services
from tests.chaos import postgres
from tests.chaos.run import Run
from tests.chaos.stack import Stack, StackOptions
from tests.conftest import CHAOS_TABLES

_RUNS: list[Run] = []


def chaos_options() -> StackOptions:
    return StackOptions(
        batteries=int(os.environ.get("PACKFLEET_CHAOS_BATTERIES", "1000")),
        interval=float(os.environ.get("PACKFLEET_CHAOS_INTERVAL", "5")),
    )


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not postgres.available() or services.mosquitto_binary() is None or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL 15's initdb/pg_ctl, mosquitto and runuser")
    stack = Stack(tmp_path_factory.mktemp("chaos"), chaos_options())
    try:
        yield stack.start()
    finally:
        stack.close()


@pytest.fixture(scope="module")
def chaos_run(chaos_stack: Stack) -> Run:
    run = Run(chaos_stack)
    _RUNS.append(run)
    return run


def _summaries() -> list[tuple[str, str]]:
    return [
        (
            f"chaos run: {run.stack.options.batteries} batteries",
            f"{run.table()}\nservice logs: {run.stack.workdir}",
        )
        for run in _RUNS
        if run.results
    ]


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Under xdist the runs are in a worker: it hands their tables to the controller, whose hooks
    # are in tests/conftest.py (a controller collects nothing, so it never loads this file).
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["chaos_tables"] = _summaries()
    else:
        session.config.stash.setdefault(CHAOS_TABLES, []).extend(_summaries())
