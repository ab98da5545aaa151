"""The fault matrix on the real backends: a dbproc, a server and the poller SIGKILLed, and Redis, PostgreSQL and
Kafka restarted, each under a trading load. Nothing acknowledged is lost, nothing is applied twice, clients see
only errors they can retry, and the platform recovers within a bound.

    CFD_TEST_BACKENDS=real .venv/bin/python -m pytest tests/faults                # assert
    CFD_TEST_BACKENDS=real .venv/bin/python -m pytest tests/faults --write-docs   # and rewrite the table

The backends are restarted with scripts/services.sh; the suite skips if that script did not start them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from helpers import RUN_ID, Services, real_only
from matrix import SCENARIOS, Cluster, Matrix, Result, Scenario, table, write_table

pytestmark = [real_only, pytest.mark.slow]

RECOVERY_BOUND = 20.0  # seconds until requests succeed promptly again, from the fault or from the backend's return
LOG_LINES_BOUND = 100  # lines one process may write during one scenario
RETRYABLE = {503, 504, "connection", "timeout"}


class Runs:
    """Each scenario runs once, when a test first asks for it; its result serves every test."""

    def __init__(self, matrix: Matrix) -> None:
        self.matrix = matrix
        self.results: dict[str, Result | BaseException] = {}
        self._lock = asyncio.Lock()

    async def result(self, scenario: Scenario) -> Result:
        async with self._lock:
            if scenario.id not in self.results:
                try:
                    self.results[scenario.id] = await self.matrix.run(scenario)
                except Exception as exc:
                    self.results[scenario.id] = exc
        found = self.results[scenario.id]
        if isinstance(found, BaseException):
            raise AssertionError(f"the scenario {scenario.id} did not complete: {found}") from found
        return found


@pytest.fixture(scope="module")
async def runs(make_settings, tmp_path_factory, request) -> AsyncIterator[Runs]:
    workdir = tmp_path_factory.mktemp("faults")
    settings = make_settings(bus={"topic_prefix": f"faults{RUN_ID}.", "partitions": 6, "request_timeout": 5.0},
                             mail={"host": None}, data_dir=workdir / "data", auth={"bcrypt_rounds": 4})
    services = Services(database_url=settings.database.url, redis_url=settings.cache.url,
                        kafka_bootstrap=settings.bus.bootstrap)
    for backend in ("postgres", "redis", "kafka"):
        try:
            services.check_owned(backend)
        except AssertionError as exc:
            pytest.skip(str(exc))
    load_before = os.getloadavg()
    cluster = Cluster(settings, workdir)
    await cluster.start()
    found = Runs(Matrix(cluster, services))
    try:
        yield found
    finally:
        await cluster.stop()
    results = [found.results.get(s.id) for s in SCENARIOS]
    if request.config.getoption("--write-docs", default=False):
        complete = [r for r in results if isinstance(r, Result)]
        assert len(complete) == len(SCENARIOS), "--write-docs needs every scenario to complete"
        write_table(table(complete, load_before, os.getloadavg()))


SCENARIO_PARAMS = [pytest.param(s, id=s.id) for s in SCENARIOS]


@pytest.mark.parametrize("scenario", SCENARIO_PARAMS)
async def test_nothing_acknowledged_is_lost_or_applied_twice(runs: Runs, scenario: Scenario) -> None:
    result = await runs.result(scenario)
    assert result.sent > 50, f"too little load to judge: {result.sent} commands"
    assert result.lost == 0, f"{result.lost} acknowledged command(s) not in the database"
    assert result.applied_twice == 0, f"{result.applied_twice} command(s) applied twice"
    assert result.invariant_breaks == []
    assert result.unanswered == 0, f"{result.unanswered} command(s) never acknowledged: {result.error_summary()}"


@pytest.mark.parametrize("scenario", SCENARIO_PARAMS)
async def test_clients_see_only_errors_they_can_retry(runs: Runs, scenario: Scenario) -> None:
    result = await runs.result(scenario)
    allowed = RETRYABLE | ({401} if scenario.restart == "redis" else set())  # sessions live in Redis
    assert result.statuses <= allowed, result.error_summary()


@pytest.mark.parametrize("scenario", SCENARIO_PARAMS)
async def test_recovers_within_the_bound(runs: Runs, scenario: Scenario) -> None:
    result = await runs.result(scenario)
    assert result.recovery_after_backend is not None
    assert result.recovery_after_backend <= RECOVERY_BOUND, (
        f"requests failed or stalled until {result.recovery:.1f} s after the fault"
        + (f", {result.recovery_after_backend:.1f} s after the backend was back" if result.down_for else ""))
    assert result.unplanned_exits == {}, "a process exited and its supervisor had to start it again"


@pytest.mark.parametrize("scenario", SCENARIO_PARAMS)
async def test_an_outage_is_logged_briefly(runs: Runs, scenario: Scenario) -> None:
    result = await runs.result(scenario)
    name, lines = result.most_log_lines
    assert lines <= LOG_LINES_BOUND, f"{name} wrote {lines} log lines"
