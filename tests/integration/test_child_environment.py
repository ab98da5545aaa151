"""A process a test starts uses the test's settings, never the backends named by the shell that ran pytest
(`.ci/run` exports the real ones, and the embedded run once wrote a user and topics into them)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import msgspec
import pytest
import typer
from helpers import REAL, child_env, cli_env, launch_script, stop_tmux_server
from typer.testing import CliRunner

from shared.settings import load_settings

POISON = {
    "CFD_DATABASE_URL": "postgresql://cfd:cfd@poisoned.invalid:5432/poisoned",
    "DATABASE_URL": "postgresql://cfd:cfd@poisoned.invalid:5432/poisoned",
    "CFD_REDIS_URL": "redis://poisoned.invalid:6379/0",
    "REDIS_URL": "redis://poisoned.invalid:6379/0",
    "CFD_KAFKA_BOOTSTRAP": "poisoned.invalid:9092",
    "KAFKA_BROKER": "poisoned.invalid:9092",
    "CFD_TOPIC_PREFIX": "poisoned.",
    "CFD_DATA_DIR": "/nonexistent/poisoned",
}
SHOW_SETTINGS = ("import json; from shared.settings import load_settings; s = load_settings(); "
                 "print(json.dumps({'database_url': s.database.url, 'redis_url': str(s.cache.url), "
                 "'kafka_bootstrap': str(s.bus.bootstrap), 'topic_prefix': s.bus.topic_prefix, "
                 "'data_dir': str(s.data_dir), 'jwt_secret': s.auth.jwt_secret}))")


@pytest.fixture
def poisoned(monkeypatch) -> None:
    """The shell that ran pytest names other backends."""
    for name, value in POISON.items():
        monkeypatch.setenv(name, value)


def _expected(settings) -> dict[str, str]:
    return {"database_url": settings.database.url, "redis_url": str(settings.cache.url),
            "kafka_bootstrap": str(settings.bus.bootstrap), "topic_prefix": settings.bus.topic_prefix,
            "data_dir": str(settings.data_dir), "jwt_secret": settings.auth.jwt_secret}


def test_a_child_process_gets_the_tests_settings_and_nothing_from_the_shell(poisoned, make_settings, tmp_path):
    settings = make_settings(data_dir=tmp_path, bus={"topic_prefix": f"child{uuid.uuid4().hex[:6]}."})
    shown = subprocess.run([sys.executable, "-c", SHOW_SETTINGS], env=child_env(settings), capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == _expected(settings)


def test_every_setting_reaches_the_child_as_the_test_has_it(make_settings, tmp_path):
    def comparable(settings):
        return msgspec.structs.replace(settings, instance_id="", log_level=settings.log_level.lower())

    settings = make_settings(data_dir=tmp_path, bus={"topic_prefix": "every."}, auth={"cookie_secure": True},
                             prices={"sim_seed": 7})
    assert comparable(load_settings(environ=child_env(settings))) == comparable(settings)


def test_cfd_doctor_started_by_a_test_checks_the_tests_backends(poisoned, make_settings, tmp_path):
    settings = make_settings(data_dir=tmp_path)
    doctor = subprocess.run([sys.executable, "-m", "cfd_cli.main", "doctor"], capture_output=True, text=True,
                            timeout=120, env=child_env(settings, COLUMNS="250", NO_COLOR="1"))
    assert "poisoned" not in doctor.stdout + doctor.stderr
    bus = f"kafka {settings.bus.bootstrap}" if REAL else "in-process"
    assert bus in doctor.stdout, doctor.stdout


def test_a_command_run_in_process_sees_only_the_tests_settings(poisoned, make_settings, tmp_path):
    settings = make_settings(data_dir=tmp_path)
    seen: dict[str, str] = {}
    app = typer.Typer()

    @app.command()
    def show() -> None:
        loaded = load_settings()
        seen.update(_expected(loaded))

    result = CliRunner().invoke(app, [], env=cli_env(settings))
    assert result.exit_code == 0, result.output
    assert seen == _expected(settings)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_tmux_pane_gets_the_tests_settings_not_the_tmux_servers(poisoned, make_settings, tmp_path):
    # A tmux server started from the poisoned shell: its panes get its environment unless told otherwise.
    settings = make_settings(data_dir=tmp_path / "data", bus={"topic_prefix": f"tmux{uuid.uuid4().hex[:6]}."})
    socket = f"cfd-test-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "settings.json"
    command = launch_script(tmp_path, child_env(settings), f"{sys.executable} -c {shlex.quote(SHOW_SETTINGS)} > {out}")
    subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", "child", command], check=True, timeout=10)
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.exists(), "the pane never ran its command"
        assert json.loads(out.read_text()) == _expected(settings)
    finally:
        stop_tmux_server(socket)
