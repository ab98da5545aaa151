"""What the terminal says about this machine: the `cfd` command that works here, where mail and screenshots are."""

from __future__ import annotations

import os
import shlex
import subprocess

from cfd_tui.local import cfd_command, cfd_script, outbox_hint


def run_shell(command: str, cwd, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", f"{command} --help"], cwd=cwd, env={**os.environ, "PATH": path},
                          capture_output=True, text=True, timeout=60)


def test_without_cfd_on_the_path_the_command_is_the_script_beside_the_interpreter(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as after the README's set-up: the venv is not activated
    script = cfd_script()
    assert script.exists()
    checkout = script.parents[2]  # <checkout>/.venv/bin/cfd
    monkeypatch.chdir(checkout)
    command = cfd_command()
    assert command == shlex.quote(str(script.relative_to(checkout))) and not os.path.isabs(command)
    assert run_shell(command, checkout, "/usr/bin:/bin").returncode == 0  # it works where it is shown
    monkeypatch.chdir(tmp_path)  # elsewhere, the full path
    assert cfd_command() == shlex.quote(str(script))
    assert run_shell(cfd_command(), tmp_path, "/usr/bin:/bin").returncode == 0


def test_with_this_cfd_on_the_path_the_command_is_plain_cfd(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", f"{cfd_script().parent}:/usr/bin:/bin")
    assert cfd_command() == "cfd"
    other = tmp_path / "bin"  # another installation's cfd first on the PATH is not this one
    other.mkdir()
    (other / "cfd").write_text("#!/bin/sh\nexit 1\n")
    (other / "cfd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{other}:{cfd_script().parent}:/usr/bin:/bin")
    assert cfd_command() != "cfd"


def test_the_outbox_hint_names_the_command_the_data_directory_and_the_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("CFD_DATA_DIR", raising=False)
    hint = outbox_hint(tmp_path / "data")
    assert f"{cfd_command()} mail outbox" in hint and str(tmp_path / "data" / "outbox") in hint
    assert "CFD_DATA_DIR" not in hint
    monkeypatch.setenv("CFD_DATA_DIR", str(tmp_path / "data"))
    assert f"CFD_DATA_DIR={tmp_path / 'data'} {cfd_command()} mail outbox" in outbox_hint(tmp_path / "data")
