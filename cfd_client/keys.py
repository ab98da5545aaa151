"""The stored API key of `cfd trade` and of scripts: one key per API URL, in `credentials.json` beside the
terminal's session (`cfd_client.session.config_dir`: owner-only, 0700; the file 0600), so a key is only ever
sent to the server that made it. `CFD_API_KEY` in the environment overrides it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from cfd_client.session import config_dir

FILE_NAME = "credentials.json"


class _File(msgspec.Struct, kw_only=True):
    keys: dict[str, str] = msgspec.field(default_factory=dict)  # API URL → key


class KeyStore:
    """Loads, saves and forgets the API key of one API URL."""

    def __init__(self, directory: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.directory = directory or config_dir(self.environ)

    @property
    def path(self) -> Path:
        return self.directory / FILE_NAME

    def load(self, api_url: str) -> str | None:
        return self.environ.get("CFD_API_KEY") or self._read().keys.get(api_url)

    def save(self, api_url: str, key: str) -> None:
        data = self._read()
        data.keys[api_url] = key
        self._write(data)

    def forget(self, api_url: str) -> bool:
        data = self._read()
        if data.keys.pop(api_url, None) is None:
            return False
        self._write(data)
        return True

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
