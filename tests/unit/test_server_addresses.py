"""Addresses the server tells clients or trusts, all from configuration: the feed's URL, the allowed origins."""

from __future__ import annotations

import pytest

from cfd_server.info import advertises_loopback_only, ws_url
from shared.errors import SettingsError
from shared.settings import load_settings


def settings(**env: str):
    return load_settings({"CFD_ENV": "test", **env}).http


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", "ws://127.0.0.1:8181/ws"),
    ("broker.lan", "ws://broker.lan:8181/ws"),
    ("0.0.0.0", "ws://127.0.0.1:8181/ws"),  # every interface: loopback is the one address sure to work here
    ("::", "ws://[::1]:8181/ws"),
    ("fd00::5", "ws://[fd00::5]:8181/ws"),
])
def test_the_feed_is_advertised_at_the_address_it_listens_on(host, expected):
    assert ws_url(settings(CFD_HTTP_HOST=host, CFD_WS_PORT="8080"), 8181) == expected


def test_a_public_feed_url_wins_and_silences_the_loopback_warning():
    public = settings(CFD_HTTP_HOST="0.0.0.0", CFD_WS_PUBLIC_URL="wss://feed.example.com/ws")
    assert ws_url(public, 8181) == "wss://feed.example.com/ws" and not advertises_loopback_only(public)
    assert advertises_loopback_only(settings(CFD_HTTP_HOST="0.0.0.0"))
    assert not advertises_loopback_only(settings(CFD_HTTP_HOST="127.0.0.1"))


def test_allowed_origins_are_normalised_as_browsers_send_them():
    allowed = settings(CFD_ALLOWED_ORIGINS="https://App.Example.com:443, http://localhost:3000 http://[::1]/")
    assert allowed.allowed_origins == ("https://app.example.com", "http://localhost:3000", "http://[::1]")
    assert settings().allowed_origins == ()


@pytest.mark.parametrize("value", ["*", "https://app.example.com/path", "app.example.com", "ftp://files.example",
                                   "https://user:pw@app.example.com", "https://app.example.com:99999",
                                   "https://app.example.com?x=1"])
def test_a_bad_allowed_origin_stops_start_up_with_its_name(value):
    with pytest.raises(SettingsError, match="CFD_ALLOWED_ORIGINS"):
        settings(CFD_ALLOWED_ORIGINS=value)
