"""`cfd up --replay FILE [--speed X | --lockstep | --seed N]` as a bot author runs it: a seeded run starts a
sandbox with a trader whose key works at once, and bad input gets one red line, never a traceback."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest
from helpers import REAL, child_env, cli_env
from typer.testing import CliRunner

from cfd_cli.main import app
from shared.settings import load_settings

CRASH = Path(__file__).resolve().parents[2] / "examples" / "recordings" / "crash.jsonl"
runner = CliRunner(env=cli_env())


@pytest.mark.parametrize(("args", "says"), [
    (["--seed", "7"], "--speed, --lockstep and --seed go with --replay FILE"),
    (["--lockstep"], "--speed, --lockstep and --seed go with --replay FILE"),
    (["--replay", "no/such/recording.jsonl", "--seed", "7"], "no recording at no/such/recording.jsonl"),
    (["--replay", str(CRASH), "--seed", "7", "--speed", "10"], "--speed does not apply"),
    (["--replay", str(CRASH), "--lockstep", "--speed", "10"], "--speed does not apply"),
])
def test_up_refuses_replay_options_that_do_not_go_together(args, says):
    result = runner.invoke(app, ["up", *args])
    assert result.exit_code == 1, result.output
    assert says in result.output and "Traceback" not in result.output


def test_up_refuses_a_speed_out_of_range():
    result = runner.invoke(app, ["up", "--replay", str(CRASH), "--speed", "0"])
    assert result.exit_code == 2 and "--speed" in result.output


async def test_a_seeded_up_runs_a_sandbox_whose_trader_can_step_at_once(tmp_path, sandbox_overrides):
    config = tmp_path / "config"
    variables = {"CFD_ENV": "test", "CFD_HTTP_PORT": "0", "CFD_WS_PORT": "0", "CFD_BCRYPT_ROUNDS": "4",
                 "CFD_TUI_CONFIG_DIR": str(config), "COLUMNS": "200"}
    if REAL:  # the real backends, a fresh database (named, so the data stay in the working directory)
        env = child_env(load_settings(environ={}, **await sandbox_overrides()), **variables)
    else:  # nothing named: a fresh temporary directory, removed at the end
        env = child_env(**variables)
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cfd_cli.main", "up", "--replay", str(CRASH), "--seed", "7", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert up.stdout is not None
    seen = ""
    try:
        async with asyncio.timeout(60):
            while "Ctrl-C" not in seen:
                line = (await up.stdout.readline()).decode()
                assert line, f"cfd up ended early:\n{seen}"
                seen += line
        assert "replay of crash.jsonl (lockstep: a step at a time)" in seen
        assert "ids seeded with 7" in seen
        api = re.search(r"api\s+(http://\S+/api/v1)", seen)
        key = re.search(r"(cfdk_\w+_[\w-]+)", seen)
        assert api and key, seen
        assert key.group(1) in (config / "credentials.json").read_text()  # kept for cfd trade and the bots
        async with httpx.AsyncClient(base_url=api.group(1), timeout=15) as http:
            step = await http.post("/replay/step", json={"count": 5},
                                   headers={"Authorization": f"Bearer {key.group(1)}"})
        assert step.status_code == 200 and step.json()["played"] == 5, step.text
    finally:
        if up.returncode is None:
            up.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(up.wait(), 30) == 0
    if not REAL:
        data = re.search(r"data\s+(\S+)", seen)
        assert data and "cfd-sandbox-" in data.group(1)
        assert not await asyncio.to_thread(Path(data.group(1)).exists)  # removed when it stopped
