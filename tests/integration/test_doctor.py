"""`cfd doctor` against real servers: it says which backend is wrong and what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
from helpers import child_env, free_port, real_only

pytestmark = [real_only, pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")]


def _redis(policy: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--maxmemory-policy", policy], stdout=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
            return server, port
        time.sleep(0.05)
    server.kill()
    raise AssertionError("redis-server did not start")


@pytest.mark.parametrize(("policy", "healthy"), [("noeviction", True), ("allkeys-lru", False)])
def test_doctor_refuses_a_redis_that_may_evict_credentials(tmp_path, policy, healthy):
    server, port = _redis(policy)
    try:
        # its own process, as an operator runs it (the doctor binds the database tables to what it checks)
        env = child_env(CFD_REDIS_URL=f"redis://127.0.0.1:{port}/0", CFD_DATA_DIR=str(tmp_path), COLUMNS="200",
                        NO_COLOR="1")
        result = subprocess.run([sys.executable, "-m", "cfd_cli.main", "doctor"], env=env, capture_output=True,
                                text=True, timeout=60)
    finally:
        server.kill()
        server.wait()
    assert "Traceback" not in result.stdout
    cache_row = next(line for line in result.stdout.splitlines() if line.startswith("│ cache"))
    if healthy:  # (the fresh SQLite file has no tables, so the database row fails: not this test's concern)
        assert "│ ok" in cache_row and "✗ cache" not in result.stdout, result.stdout
    else:
        assert result.returncode == 1, result.stdout
        assert "│ down" in cache_row and f"maxmemory-policy is {policy}" in result.stdout
        assert "✗ cache" in result.stdout and "volatile-lru or noeviction" in result.stdout
