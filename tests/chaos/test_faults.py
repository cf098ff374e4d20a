"""The release check under faults: each fault in turn while batteries stream and commands roll out."""

from __future__ import annotations

import pytest

from tests.chaos.faults import FAULTS
from tests.chaos.run import Fault, Run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(chaos_run: Run, fault: Fault) -> None:
    result = chaos_run.phase(fault)
    assert not result.problems, "\n".join(result.problems)
