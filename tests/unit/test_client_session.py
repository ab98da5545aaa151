"""The saved session: where it lives, owner-only permissions, one entry per server, expiry."""

from __future__ import annotations

import stat
from pathlib import Path

from cfd_client.session import SessionStore, config_dir
from shared.contracts.rest import AuthSession, User

USER = User(id="u1", email="ada@example.com", name="Ada", created_at=1)


def session(token: str = "tok", expires_in: int = 3600) -> AuthSession:
    return AuthSession(user=USER, access_token=token, expires_in=expires_in)


def test_config_dir_follows_the_override_then_xdg_then_home():
    assert config_dir({"CFD_TUI_CONFIG_DIR": "/x/y", "XDG_CONFIG_HOME": "/c"}) == Path("/x/y")
    assert config_dir({"XDG_CONFIG_HOME": "/c", "HOME": "/h"}) == Path("/c/cfd-broker")
    assert config_dir({"HOME": "/h"}) == Path("/h/.config/cfd-broker")


def test_saved_token_is_owner_only_and_survives_a_restart(tmp_path):
    directory = tmp_path / "cfg"
    SessionStore(directory).save("http://a/api/v1", session())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "session.json").stat().st_mode) == 0o600
    restored = SessionStore(directory).load("http://a/api/v1")
    assert restored is not None and restored.access_token == "tok" and restored.user.email == "ada@example.com"


def test_a_token_is_only_offered_to_the_server_that_issued_it(tmp_path):
    store = SessionStore(tmp_path)
    store.save("http://a/api/v1", session("token-a"))
    store.save("http://b/api/v1", session("token-b"))
    assert store.load("http://a/api/v1").access_token == "token-a"
    assert store.load("http://c/api/v1") is None
    store.forget("http://a/api/v1")
    assert store.load("http://a/api/v1") is None and store.load("http://b/api/v1").access_token == "token-b"


def test_an_expired_or_nearly_expired_session_is_not_restored(tmp_path):
    now = [1000.0]
    store = SessionStore(tmp_path, clock=lambda: now[0])
    store.save("http://a/api/v1", session(expires_in=100))
    now[0] += 80  # within the last 30 s
    assert store.load("http://a/api/v1") is None


def test_a_damaged_file_means_no_session_not_a_crash(tmp_path):
    (tmp_path / "session.json").write_text("{not json")
    assert SessionStore(tmp_path).load("http://a/api/v1") is None
    SessionStore(tmp_path).save("http://a/api/v1", session())
    assert SessionStore(tmp_path).load("http://a/api/v1") is not None
