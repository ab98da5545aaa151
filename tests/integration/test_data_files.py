"""The data directory holds password hashes (the SQLite database), sign-up codes (outbox mails) and secrets:
it and everything the platform writes in it are for the owner only, whatever the umask."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import Mailbox

from cfd_dbproc.db import Database
from shared.settings import load_settings, private_dir, private_file, write_private


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(root: Path) -> dict[str, str]:
    """Every directory and file under `root` (itself included) with its mode, in octal."""
    found = {".": f"{mode(root):o}"}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = f"{mode(path):o}"
    return found


def owner_only(found: dict[str, str], root: Path) -> dict[str, str]:
    """The entries whose mode is not 700 (directories) or 600 (files)."""
    return {name: m for name, m in found.items()
            if m != ("700" if (root / name).is_dir() else "600")}


async def test_everything_the_local_platform_writes_is_owner_only(tmp_path):
    from cfd_cli.platform import Platform

    data_dir = tmp_path / "fresh" / ".cfd"
    # the embedded column in dev mode, whatever backend set this run uses: that is where these files live
    settings = load_settings(environ={}, env="dev", data_dir=data_dir, http={"port": 0, "ws_port": 0},
                             auth={"bcrypt_rounds": 4},
                             trading={"quote_wait_seconds": 0})  # no price feed here to wait for
    email = "files@example.com"
    with umask(0o022):
        platform = Platform(settings, ("dbproc", "server"), migrate_db=True)
        await platform.start()
        try:
            async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1") as api:
                assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
                await Mailbox(outbox=settings.mail.outbox_dir).wait_for(email)
            running = modes(data_dir)
        finally:
            await platform.stop()
    stopped = modes(data_dir)
    for name in ("cfd.sqlite3", "cfd.sqlite3-wal", "cfd.sqlite3-shm", "jwt-secret", "admin-token", "outbox"):
        assert name in running, f"{name} was not written: {sorted(running)}"
    assert any(name.endswith(".eml") for name in running)
    assert "cache-snapshot" in stopped  # the dev platform's sessions, written on a clean stop
    assert owner_only(running, data_dir) == {} and owner_only(stopped, data_dir) == {}
    assert mode(tmp_path / "fresh") == 0o700  # a missing parent is made private too


async def test_a_data_directory_left_readable_is_tightened_with_a_warning(tmp_path, caplog):
    data_dir = tmp_path / "old"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    database = data_dir / "cfd.sqlite3"
    for name in ("cfd.sqlite3", "cfd.sqlite3-wal", "cfd.sqlite3-journal"):
        (data_dir / name).touch()
        (data_dir / name).chmod(0o644)
    settings = load_settings(environ={}, env="test", data_dir=data_dir)
    with caplog.at_level(logging.WARNING, logger="shared.settings"):
        db = Database(settings.database, settings.data_dir)
    await db.stop()
    assert mode(data_dir) == 0o700
    assert {name: f"{mode(data_dir / name):o}" for name in ("cfd.sqlite3", "cfd.sqlite3-wal",
                                                            "cfd.sqlite3-journal")} == dict.fromkeys(
        ("cfd.sqlite3", "cfd.sqlite3-wal", "cfd.sqlite3-journal"), "600")
    assert not (data_dir / "cfd.sqlite3-shm").exists()  # a side file that was not there is not made up
    warned = [r.getMessage() for r in caplog.records]
    assert any(str(data_dir) in m and "755" in m for m in warned), warned
    assert any(str(database) in m and "644" in m for m in warned), warned


async def test_a_database_outside_the_data_directory_leaves_its_folder_alone(tmp_path):
    shared_folder = tmp_path / "shared"
    shared_folder.mkdir()
    shared_folder.chmod(0o755)
    settings = load_settings(environ={}, env="test", data_dir=tmp_path / "data",
                             database={"url": f"sqlite:///{shared_folder / 'cfd.sqlite3'}"})
    await Database(settings.database, settings.data_dir).stop()
    assert mode(shared_folder) == 0o755 and mode(shared_folder / "cfd.sqlite3") == 0o600


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o277])
def test_private_paths_get_exact_modes_whatever_the_umask(tmp_path, mask):
    with umask(mask):
        folder = private_dir(tmp_path / "a" / "b")
        write_private(folder / "mail.eml", b"code 123456")
        private_file(folder / "db")
    assert (mode(tmp_path / "a"), mode(folder)) == (0o700, 0o700)
    assert (mode(folder / "mail.eml"), mode(folder / "db")) == (0o600, 0o600)
    assert (folder / "mail.eml").read_bytes() == b"code 123456"
    with pytest.raises(FileExistsError):
        write_private(folder / "mail.eml", b"again")
