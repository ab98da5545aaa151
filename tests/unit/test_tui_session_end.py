"""The terminal notices when the feed says its session ended elsewhere (a logout on another device, or an
operator disabling the account) and asks to sign in again instead of showing a frozen account."""

from __future__ import annotations

import pytest
from fake_broker import FakeBroker
from test_tui_app import SIZE, make, on, ready, until

from cfd_tui.screens.signin import SignInScreen
from shared.contracts.ws import ErrorFrame


@pytest.mark.parametrize("code", ["session_ended", "account_disabled"])
async def test_a_session_ended_on_the_feed_returns_to_sign_in(code):
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        fake.sessions.clear()  # ended on the server
        for feed in list(fake.feeds):
            feed.emit(ErrorFrame(code=code, message="This session has ended."))
        await until(pilot, lambda: on(app, SignInScreen))
