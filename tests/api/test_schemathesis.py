"""schemathesis against the running API, as each role: every answer is one the document declares
(status, content type, headers, body schema) and none is a 5xx. A bounded number of examples per
operation and role here; `pytest -m slow tests/api/test_schemathesis.py` for the long run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from psycopg.rows import dict_row
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import factories
from tests.api.authz import ROLES
from tests.api.contract import document
from tests.api.test_clients import serve
from tests.conftest import token_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = int(os.environ.get("PACKFLEET_SCHEMATHESIS_EXAMPLES", "3"))
# The bounded run covers the routes of the asset APIs; the long run covers every route (the other
# domains' too: their answers may wait seconds on a worker, as the SMS routes do).
ASSET_SECTIONS = ("Authentication", "Battery Management", "Consumer Management", "Battery Packs", "Commands")
# Bounded: the spec's examples and EXAMPLES generated cases per operation and role, without the
# coverage phase (every boundary case of every schema: minutes). The long run has every phase
# (the schemathesis command: its pytest plugin's lazy schemas do not work with pytest 9).
BOUNDED = schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
asset_routes = schemathesis.openapi.from_dict(document(), config=BOUNDED).include(tag=list(ASSET_SECTIONS))


@pytest.fixture(scope="module")
def fleet(database_url: str) -> dict[str, dict[str, Any]]:
    """A user of each role (two dealers), their consumer and batteries."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        dealer, other = factories.dealer(conn), factories.dealer(conn)
        consumer = factories.consumer(conn, dealer["id"])
        for owner in (consumer["id"], None):
            factories.battery(conn, dealer_id=dealer["id"], owner_id=owner)
        return {
            "admin": factories.user(conn, "admin"),
            "dealer": factories.user(conn, "dealer", dealer_id=dealer["id"]),
            "other_dealer": factories.user(conn, "dealer", dealer_id=other["id"]),
            "consumer": factories.user(conn, "consumer", consumer_id=consumer["id"]),
            "technician": factories.user(conn, "technician"),
            "nbfc": factories.user(conn, "nbfc"),
        }


@pytest.fixture(scope="module")
def base_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(database_url, Path(tmp_path_factory.mktemp("schemathesis"))) as url:
        yield url


def _run(case: schemathesis.Case, base_url: str, fleet: dict[str, dict[str, Any]], role: str) -> None:
    headers = {"Authorization": f"Bearer {token_for(fleet[role])}"}
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)


@pytest.mark.parametrize("role", ROLES)
@asset_routes.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
)
def test_answers_conform_to_the_document(
    case: schemathesis.Case, base_url: str, fleet: dict[str, dict[str, Any]], role: str
) -> None:
    _run(case, base_url, fleet, role)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_answers_conform_to_the_document_at_length(base_url: str, fleet: dict[str, dict[str, Any]]) -> None:
    """Every route and every phase (the coverage phase's boundary cases too), as every role: the
    schemathesis command itself against the running API, 50 examples per operation (about half an
    hour on 2 cores)."""
    checks = ",".join(check.__name__ for check in CHECKS)
    for role in ROLES:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{base_url}/api/openapi.json",
                "--checks",
                checks,
                "--max-examples",
                "50",
                "--generation-database",
                "none",
                "--header",
                f"Authorization: Bearer {token_for(fleet[role])}",
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        assert run.returncode == 0, f"as {role}:\n{run.stdout[-6000:]}{run.stderr[-2000:]}"
