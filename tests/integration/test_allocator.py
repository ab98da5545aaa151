"""Long-running commands run on jemalloc when the machine has it (`cfd_cli/allocator.py`): glibc's malloc
fragments under the platform's churn, and a process picks its allocator only when it starts."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from ctypes.util import find_library
from pathlib import Path

import httpx
import pytest
from helpers import child_env

JEMALLOC = find_library("jemalloc")


def _start_up(settings, extra: dict[str, str]) -> subprocess.Popen:
    env = {**child_env(settings), **extra}
    return subprocess.Popen([sys.executable, "-m", "cfd_cli.main", "up"], env=env, cwd=settings.data_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _allocator_of(process: subprocess.Popen, port: int) -> bool:
    """Whether jemalloc is mapped into the platform's process once it is ready; stops it."""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        maps = Path(f"/proc/{process.pid}/maps").read_text().splitlines()
        return any(line.rsplit("/", 1)[-1].startswith("libjemalloc") for line in maps)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


@pytest.mark.skipif(sys.platform != "linux" or JEMALLOC is None, reason="needs jemalloc (apt-get install libjemalloc2)")
def test_cfd_up_runs_on_jemalloc_unless_told_to_keep_the_system_allocator(make_settings, tmp_path):
    for name, choice, expected in (("auto", {}, True), ("system", {"CFD_ALLOCATOR": "system"}, False)):
        data_dir = tmp_path / name
        data_dir.mkdir()
        settings = make_settings(data_dir=data_dir, http={"port": _free_port(), "ws_port": _free_port()})
        process = _start_up(settings, choice)
        assert _allocator_of(process, settings.http.port) is expected, name


def test_a_wrong_allocator_choice_is_one_clear_line(make_settings, tmp_path):
    settings = make_settings(data_dir=tmp_path)
    done = subprocess.run([sys.executable, "-m", "cfd_cli.main", "up"], env={**child_env(settings),
                          "CFD_ALLOCATOR": "tcmalloc"}, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip() == "error: CFD_ALLOCATOR is 'tcmalloc'; use one of auto, jemalloc, system"


def test_a_short_command_keeps_the_system_allocator(make_settings, tmp_path):
    settings = make_settings(data_dir=tmp_path)
    probe = ("import os, sys; sys.argv = ['cfd', 'mail', 'outbox']; from cfd_cli.allocator import preload_jemalloc; "
             "preload_jemalloc(); print(os.environ.get('LD_PRELOAD', ''))")
    done = subprocess.run([sys.executable, "-c", probe], env=child_env(settings), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "jemalloc" not in done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

