"""`--workers N`: refused on the in-process bus and cache with what to set; the ports are checked once, before any
worker starts; each worker is its own instance with its own metrics port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from helpers import cli_env
from typer.testing import CliRunner

from cfd_cli.main import app
from cfd_cli.platform import StartupError
from cfd_cli.workers import check_ports, worker_settings
from shared.settings import load_settings

CRASH = Path(__file__).resolve().parents[2] / "examples" / "recordings" / "crash.jsonl"
runner = CliRunner(env=cli_env(CFD_ENV="test", COLUMNS="200"))


@pytest.mark.parametrize(("args", "env", "missing"), [
    (["server", "--workers", "2"], {}, "bus and cache"),
    (["server"], {"CFD_SERVER_WORKERS": "3"}, "bus and cache"),
    (["up", "--workers", "2"], {"CFD_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "cache"),
    (["up", "--workers", "4"], {"CFD_REDIS_URL": "redis://127.0.0.1:1/0"}, "bus"),
])
def test_several_workers_are_refused_on_the_in_process_backends(args, env, missing, tmp_path):
    result = runner.invoke(app, args, env={"CFD_DATA_DIR": str(tmp_path), **env})
    assert result.exit_code == 1, result.output
    assert f"cannot share the in-process {missing}: several processes need Kafka and Redis" in result.output
    wanted = [name for name in ("CFD_KAFKA_BOOTSTRAP", "CFD_REDIS_URL") if name not in env]
    assert f"set {' and '.join(wanted)}" in result.output and "Traceback" not in result.output


def test_a_replay_runs_one_server():
    result = runner.invoke(app, ["up", "--replay", str(CRASH), "--workers", "2"])
    assert result.exit_code == 1 and "--workers does not go with --replay" in result.output


def test_a_worker_count_out_of_range_is_a_usage_error():
    result = runner.invoke(app, ["server", "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output


def test_a_port_in_use_is_one_error_naming_its_variable():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = load_settings({}, env="test", http={"port": 0, "ws_port": port})
        with pytest.raises(StartupError) as failed:
            check_ports(settings, 2)
    assert str(failed.value) == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    assert failed.value.hint == "stop what uses the port, or set CFD_WS_PORT to a free one"


def test_ports_of_zero_are_chosen_once_for_every_worker():
    settings = check_ports(load_settings({}, env="test", http={"port": 0, "ws_port": 0}), 3)
    assert settings.http.port and settings.http.ws_port and settings.http.port != settings.http.ws_port
    with socket.create_server(("127.0.0.1", settings.http.port)):  # chosen, not held: the workers bind it
        pass


def test_the_metrics_ports_of_every_worker_are_checked():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = load_settings({}, env="test", http={"port": 0, "ws_port": 0, "metrics_port": port - 1})
        with pytest.raises(StartupError) as failed:
            check_ports(settings, 2)  # worker 2's
    assert f"cannot listen on 127.0.0.1:{port}" in str(failed.value) and "CFD_METRICS_PORT" in failed.value.hint


def test_each_worker_is_an_instance_of_its_own_with_its_own_metrics_port():
    settings = load_settings({}, env="test", instance_id="api", http={"metrics_port": 9100})
    second = worker_settings(settings, 2)
    assert second.instance_id == "api-w2" and second.http.metrics_port == 9101 and second.http.reuse_port
    assert worker_settings(settings.replace(http={"metrics_port": 0}), 3).http.metrics_port == 0
    assert not settings.http.reuse_port
