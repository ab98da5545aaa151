"""`cfd doctor` as an operator runs it, in a process of its own: it creates nothing wherever it runs, its advice
fits the configured backend, and it checks that the running API answers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import free_port


def doctor_env(**cfd: str) -> dict[str, str]:
    """Only what the doctor should see: no inherited CFD_* variable (the test run may point at real backends)."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "NO_COLOR": "1", **cfd}


def run_doctor(cwd: Path, *args: str, **cfd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cfd_cli.main", "doctor", *args], cwd=cwd, env=doctor_env(**cfd),
                          capture_output=True, text=True, timeout=60)


async def run_doctor_async(cwd: Path, *args: str, **cfd: str) -> tuple[int, str]:
    """The doctor, while this test's event loop serves the API it checks."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cfd_cli.main", "doctor", *args, cwd=cwd, env=doctor_env(**cfd),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, errors = await asyncio.wait_for(process.communicate(), 60)
    assert b"Traceback" not in errors, errors.decode()
    return process.returncode or 0, out.decode()


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


def row(output: str, concern: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"│ {concern} "))


def test_run_elsewhere_it_creates_nothing_and_gives_advice_for_sqlite(tmp_path: Path) -> None:
    result = run_doctor(tmp_path, "--no-api")
    assert result.returncode == 1, result.stdout + result.stderr
    assert contents(tmp_path) == {}  # no .cfd/, no secret, no database file, no outbox
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    assert "down" in row(out, "database") and "no database file at .cfd/cfd.sqlite3" in row(out, "database")
    assert "✗ database: run the doctor where the platform keeps its data" in out and "cfd db migrate" in out
    assert "PostgreSQL" not in out and "postgres" not in out
    assert "nothing to reach" in row(out, "bus") and "nothing to reach" in row(out, "cache")


def test_its_advice_for_postgresql_is_about_postgresql(tmp_path: Path) -> None:
    result = run_doctor(tmp_path, "--no-api", CFD_DATABASE_URL=f"postgresql://cfd:secret@127.0.0.1:{free_port()}/cfd")
    assert result.returncode == 1
    assert "down" in row(result.stdout, "database") and "secret" not in result.stdout
    assert "✗ database: start PostgreSQL" in result.stdout
    assert contents(tmp_path) == {}


def test_it_leaves_the_platforms_data_as_it_found_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    migrated = subprocess.run([sys.executable, "-m", "cfd_cli.main", "db", "migrate"], cwd=tmp_path,
                              env=doctor_env(CFD_DATA_DIR=str(data)), capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    (data / "cache-snapshot").write_bytes(b"saved sessions")  # what a dev platform keeps between runs
    before = contents(tmp_path)

    result = run_doctor(tmp_path, "--no-api", CFD_DATA_DIR=str(data))
    assert result.returncode == 0, result.stdout
    assert "ok" in row(result.stdout, "database") and "ok" in row(result.stdout, "mail")
    assert "✓ everything checked answers" in result.stdout
    assert contents(tmp_path) == before


def test_a_database_that_lacks_migrations_says_to_migrate(tmp_path: Path) -> None:
    import sqlite3

    data = tmp_path / ".cfd"
    data.mkdir()
    sqlite3.connect(data / "cfd.sqlite3").close()  # a file, but nothing migrated
    result = run_doctor(tmp_path, "--no-api")
    assert "has no tables" in row(result.stdout, "database")
    assert "✗ database: create them with: cfd db migrate" in result.stdout


async def test_it_checks_that_the_running_api_answers(platform, tmp_path: Path) -> None:
    code, out = await run_doctor_async(tmp_path, "--api", platform.base_url)
    assert "ok" in row(out, "api") and "ready" in row(out, "api"), out

    dead = f"http://127.0.0.1:{free_port()}"
    code, out = await run_doctor_async(tmp_path, CFD_API_URL=dead)
    assert code == 1 and "down" in row(out, "api") and f"nothing answers at {dead}" in row(out, "api")
    assert "✗ api: start the platform with `cfd up`" in out and "--api URL" in out

    port = dead.rsplit(":", 1)[1]
    code, out = await run_doctor_async(tmp_path, "--json", CFD_HTTP_PORT=port)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    checks = {c["concern"]: c for c in report["checks"]}
    assert list(checks) == ["bus", "cache", "database", "mail", "api", "prices"]
    assert checks["api"]["backend"] == dead and checks["api"]["state"] == "down"
    assert "cfd up" in checks["api"]["hint"]
    assert checks["bus"] == {"concern": "bus", "backend": "in-process", "state": "skipped",
                             "detail": "inside the platform's process: nothing to reach", "hint": None}
