"""The release check under faults: each fault in turn while batteries stream and commands roll out."""

from __future__ import annotations

import pytest

from tests import services
from tests.chaos.faults import FAULTS, restart_broker
from tests.chaos.run import Fault, Run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(chaos_run: Run, fault: Fault) -> None:
    result = chaos_run.phase(fault)
    if (
        fault.inject is restart_broker
        and services.loses_shared_subscriptions_on_restart()
        and result.problems
        and all(" readings lost, " in problem for problem in result.problems)
    ):
        # Known and only this: Mosquitto 2.0 drops what devices publish between its restart and the
        # ingest workers' re-subscription (README, "The release check"). Anything else still fails.
        pytest.xfail(f"Mosquitto {services.mosquitto_version()}, no persist plugin: {result.problems}")
    assert not result.problems, "\n".join(result.problems)
