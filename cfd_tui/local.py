"""What the terminal tells a trader about the machine it runs on: how to run this installation's `cfd`, where
a local platform's mail is, where screenshots go."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

SCRIPT = "cfd.exe" if os.name == "nt" else "cfd"


def cfd_script() -> Path:
    """The `cfd` script installed beside the running interpreter (e.g. `.venv/bin/cfd`), found or not."""
    scripts = sysconfig.get_path("scripts")
    folder = Path(scripts) if scripts else Path(sys.executable).parent
    return folder.absolute() / SCRIPT


def cfd_command(cwd: Path | None = None) -> str:
    """How to run this installation's `cfd` from `cwd` (the current folder): `cfd` when the PATH finds this
    very script, else its path, relative when it is under `cwd` (`.venv/bin/cfd` in a checkout)."""
    script = cfd_script()
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m cfd_cli"
    found = shutil.which(SCRIPT)
    if found is not None and Path(found).resolve() == script.resolve():
        return SCRIPT
    here = (cwd or Path.cwd()).absolute()
    try:
        return shlex.quote(str(script.relative_to(here)))
    except ValueError:
        return shlex.quote(str(script))


def outbox_hint(data_dir: Path) -> str:
    """What the code screen says when the platform is local and mails into `data_dir`'s outbox."""
    command = f"{cfd_command()} mail outbox"
    if os.environ.get("CFD_DATA_DIR"):  # the other terminal must read the same data directory
        command = f"CFD_DATA_DIR={shlex.quote(os.environ['CFD_DATA_DIR'])} {command}"
    return (f"Local platform: no mail leaves this machine. In another terminal, in this folder, run:\n"
            f"  {command}\nor open the newest mail in {data_dir / 'outbox'}{os.sep}")


def default_screenshot_dir() -> Path:
    """Where `cfd-tui` keeps screenshots: `$XDG_DATA_HOME/cfd-broker/screenshots` (`~/.local/share/...`)."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "cfd-broker" / "screenshots"
