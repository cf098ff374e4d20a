"""Fixtures: the real PostgreSQL (a database of this run's own) and a real mosquitto."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from api.auth.tokens import issue_token
from packfleet.settings import Settings
from tests import services

JWT_SECRET = secrets.token_urlsafe(32)

# A parameter made at collection time (a reading stamped "now") would give each xdist worker
# another test id, and xdist refuses to run when its workers collected different tests.
_COLLECTION_TIME = re.compile(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Test ids that are the same in every worker: a timestamp in a parameter reads `<ts>`."""
    if isinstance(val, bytes):
        text = val.decode("ascii", "backslashreplace")
    elif isinstance(val, str):
        text = val
    else:
        return None
    if len(text) > 200 or not _COLLECTION_TIME.search(text):
        return None  # pytest's own id (a long value gets the parameter's name and index)
    return _COLLECTION_TIME.sub("<ts>", text)


# The chaos run's summary tables (title, table), printed at the end of the session. They come from
# tests/chaos/conftest.py: straight from this process, or from xdist workers as they finish.
CHAOS_TABLES = pytest.StashKey[list[tuple[str, str]]]()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:  # node: xdist's WorkerController
    tables = getattr(node, "workeroutput", {}).get("chaos_tables", [])
    node.config.stash.setdefault(CHAOS_TABLES, []).extend(tuple(t) for t in tables)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for title, text in config.stash.get(CHAOS_TABLES, []):
        terminalreporter.write_sep("=", title)
        terminalreporter.write_line(text)


@pytest.fixture(scope="session")
def admin_url() -> str:
    return services.admin_url()


@pytest.fixture(scope="session")
def database_url(admin_url: str) -> Iterator[str]:
    """A migrated database shared by this test run; tests use their own serials and dealers."""
    url = services.create_database(admin_url)
    yield url
    services.drop_database(admin_url, url)


@pytest.fixture
def fresh_database_url(admin_url: str) -> Iterator[str]:
    """A migrated database for one test alone (for tests that count every row)."""
    url = services.create_database(admin_url)
    yield url
    services.drop_database(admin_url, url)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def _mosquitto(tmp: Path) -> services.Mosquitto:
    if services.mosquitto_binary() is None:
        pytest.skip(
            "needs the mosquitto broker: `apt-get install mosquitto` (Debian/Ubuntu) "
            "or `brew install mosquitto` (macOS)"
        )
    return services.Mosquitto(tmp).start()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Mosquitto]:
    """One broker for the run, with the project's queue and in-flight settings."""
    broker = _mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[services.Mosquitto]:
    """A broker for one test alone (for tests that restart it or count every message)."""
    broker = _mosquitto(tmp_path / "mosquitto")
    yield broker
    broker.stop()


def make_settings(database_url: str, mqtt_url: str | None = None, **overrides: object) -> Settings:
    return Settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        jwt_secret=JWT_SECRET,
        mqtt_protocol=5,
        log_json=False,
        **overrides,
    )


@pytest.fixture
def settings(database_url: str, mosquitto: services.Mosquitto) -> Settings:
    return make_settings(database_url, mosquitto.url)


def token_for(user: dict) -> str:
    return issue_token(user, secret=JWT_SECRET, ttl=timedelta(hours=1))
