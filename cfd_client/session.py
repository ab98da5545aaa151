"""The stored session: the access token kept between runs, so a restart stays signed in until it expires.

Kept in `$CFD_TUI_CONFIG_DIR/session.json`, else `$XDG_CONFIG_HOME/cfd-broker/session.json`, else
`~/.config/cfd-broker/session.json`; the directory is owner-only (0700) and the file too (0600). One entry
per API URL, so a token is only ever sent to the server that issued it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from shared.contracts.rest import AuthSession, User

FILE_NAME = "session.json"
APP_DIR = "cfd-broker"
EXPIRY_MARGIN_S = 30  # a token this close to its end is not worth restoring


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the TUI keeps its files, by the rules in the module docstring."""
    env = os.environ if environ is None else environ
    if env.get("CFD_TUI_CONFIG_DIR"):
        return Path(env["CFD_TUI_CONFIG_DIR"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base).expanduser() / APP_DIR


class SavedSession(msgspec.Struct, kw_only=True):
    """A token and whom it belongs to; `expires_at` in epoch seconds."""

    api_url: str
    access_token: str
    expires_at: float
    user: User


class _File(msgspec.Struct, kw_only=True):
    sessions: dict[str, SavedSession] = msgspec.field(default_factory=dict)


class SessionStore:
    """Loads, saves and forgets the saved session of one API URL."""

    def __init__(self, directory: Path | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory or config_dir()
        self.clock = clock

    @property
    def path(self) -> Path:
        return self.directory / FILE_NAME

    def load(self, api_url: str) -> SavedSession | None:
        """The saved session for `api_url`, unless there is none or it has (nearly) expired."""
        saved = self._read().sessions.get(api_url)
        if saved is None or saved.expires_at - EXPIRY_MARGIN_S <= self.clock():
            return None
        return saved

    def save(self, api_url: str, session: AuthSession) -> SavedSession:
        """Remember a fresh sign-in (replacing the previous session of that URL)."""
        saved = SavedSession(api_url=api_url, access_token=session.access_token,
                             expires_at=self.clock() + session.expires_in, user=session.user)
        data = self._read()
        now = self.clock()
        data.sessions = {url: s for url, s in data.sessions.items() if s.expires_at > now}
        data.sessions[api_url] = saved
        self._write(data)
        return saved

    def forget(self, api_url: str) -> None:
        """Drop the session of `api_url` (after signing out, or when the server refused the token)."""
        data = self._read()
        if data.sessions.pop(api_url, None) is not None:
            self._write(data)

    def _read(self) -> _File:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=_File)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return _File()

    def _write(self, data: _File) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.directory, 0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, msgspec.json.format(msgspec.json.encode(data)))
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
