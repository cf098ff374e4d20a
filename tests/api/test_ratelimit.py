"""Rate-limit counters: in memory per process, shared between processes through a real Redis."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from api.errors import TooManyRequests
from api.ratelimit import build_rate_limits
from tests import services
from tests.api.conftest import clear_of_a_window_edge
from tests.conftest import make_settings


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "needs redis-server: `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis`"
        )
    port = services.free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        services.wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _over_limit(limits, key: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        await limits.hit(limits.api, "api", key)
    except TooManyRequests as exc:
        assert exc.headers is not None and 1 <= int(exc.headers["Retry-After"]) <= 60
        assert exc.body()["retry_after"] == int(exc.headers["Retry-After"])
        return True
    return False


def test_two_processes_share_counters_through_redis(redis_url: str) -> None:
    settings = make_settings("postgresql://unused/unused", redis_url=redis_url, rate_limit_api="3/minute")
    clear_of_a_window_edge()

    async def scenario() -> list[bool]:
        first, second = build_rate_limits(settings), build_rate_limits(settings)
        return [
            await _over_limit(limits, key)
            for limits, key in [(first, "7"), (second, "7"), (first, "7"), (second, "7"), (second, "8")]
        ]

    # the fourth hit for user 7 is refused although each "process" saw only two; user 8 is separate
    assert asyncio.run(scenario()) == [False, False, False, True, False]


def test_memory_counters_are_per_process() -> None:
    settings = make_settings("postgresql://unused/unused", rate_limit_api="1/minute")
    clear_of_a_window_edge()

    async def scenario() -> list[bool]:
        first, second = build_rate_limits(settings), build_rate_limits(settings)
        return [await _over_limit(limits, "1") for limits in (first, first, second)]

    assert asyncio.run(scenario()) == [False, True, False]
