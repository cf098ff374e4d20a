"""schemathesis over the whole app's OpenAPI document, authenticated as each role, all checks.

The API runs as its own process (`packfleet api`) on a database of this module's own, seeded with two
dealers' worlds (tests/api/conftest.py's World), so generated ids hit real and foreign objects alike.
No 5xx, every answer in its declared status codes and schema, no stack trace or SQL in an error.
tests/api (issue 15) checks response conformance route by route; this is the every-role run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from psycopg.rows import dict_row
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from tests import services
from tests.api.conftest import World, bearer
from tests.chaos.api_rules import broken_by
from tests.chaos.stack import Service
from tests.conftest import JWT_SECRET, make_settings

pytestmark = pytest.mark.chaos
EXAMPLES = int(os.environ.get("PACKFLEET_SCHEMATHESIS_EXAMPLES", "10"))
LEAKS = ("Traceback", 'File "/', "psycopg", "SELECT ", "INSERT INTO", "asyncpg", "sqlalchemy")

# The app's own document, built without a database (as tests/api/test_authorization.py does); the
# requests go to the running process.
schema = schemathesis.openapi.from_dict(create_app(make_settings("postgresql://unused/unused")).openapi())


@pytest.fixture(scope="module")
def api_world(admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, World]]:
    database_url = services.create_database(admin_url)
    logs = tmp_path_factory.mktemp("schemathesis")
    port = services.free_port()
    env = {
        **os.environ,
        "PACKFLEET_DATABASE_URL": database_url,
        "PACKFLEET_JWT_SECRET": JWT_SECRET,
        "PACKFLEET_LOG_JSON": "true",
        "PACKFLEET_RATE_LIMIT_API": "1000000/minute",
        "PACKFLEET_RATE_LIMIT_AUTH": "1000000/minute",
        "PACKFLEET_RATE_LIMIT_UPLOAD": "1000000/minute",
        "PACKFLEET_SMS_ANSWER_WAIT_SECONDS": "0",
        "PACKFLEET_STORAGE_DIR": str(logs / "storage"),
    }
    api = Service("api", ["api", "--port", str(port)], env, Path(logs), supervised=False)
    api.start()
    conn = psycopg.connect(database_url, autocommit=True, row_factory=dict_row)
    try:
        services.wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}", World(conn)
    finally:
        conn.close()
        api.stop()
        assert "Traceback" not in (Path(logs) / "api.log").read_text(), f"the API logged a traceback: {logs}"
        services.drop_database(admin_url, database_url)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_as_every_role(case: schemathesis.Case, api_world: tuple[str, World]) -> None:
    """Each generated request is sent once as each role. A schema-valid request refused with a 400 is
    a failure unless it breaks one of the documented rules JSON Schema cannot state (api_rules.py)
    and the 400 is that rule's; all the other checks run on it all the same."""
    base_url, world = api_world
    for role, user in world.users().items():
        headers = bearer(user)
        if "Idempotency-Key" not in (case.headers or {}):
            # Where the operation declares the key, schemathesis's own value (a wrong one in the
            # negative cases) must reach the API: overwriting it made a refused key look accepted.
            headers["Idempotency-Key"] = uuid.uuid4().hex
        # The SMS routes may wait up to their documented 10 s (`wait`) for the provider.
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        excused = response.status_code in (400, 415) and any(
            rule.answered_by(response.status_code, response.json())
            for rule in broken_by(case, user, world.conn)
        )
        case.validate_response(
            response,
            headers=headers,
            excluded_checks=[positive_data_acceptance] if excused else None,
            transport_kwargs={"base_url": base_url, "headers": headers, "timeout": 30},
        )
        if response.status_code >= 400:
            leaked = [marker for marker in LEAKS if marker in response.text]
            assert not leaked, f"{role}: {response.status_code} leaks {leaked}: {response.text[:300]}"
