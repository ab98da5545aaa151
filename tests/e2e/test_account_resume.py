"""Resuming the `account` channel after being away: a bot that reconnects with `since` gets exactly what it
missed, in order, then the live events, none twice; one away longer than the events are kept gets `resume_gap`
and the account's state to start again from; the client library does all of it by itself."""

from __future__ import annotations

import asyncio
import json
import time

import websockets
from helpers import Forwarder, set_price, signed_in

from cfd_client import FeedClient, FeedState, StateChanged
from cfd_client.models import AccountFrame, OrderFrame, PositionFrame
from cfd_dbproc.db.tables import AccountEvents, Users
from cfd_dbproc.retention import HOUR_MS
from shared.backoff import Backoff

ORDER = {"symbol": "SOL_USDC", "side": "long", "qty": "1", "leverage": 2}
LIMIT = {**ORDER, "type": "limit", "price": "90.00"}


async def recv(ws, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def account_frames_until_pong(ws) -> list[dict]:
    """The account events that arrive before the answer to a ping sent now (marks left out)."""
    await ws.send(json.dumps({"op": "ping", "id": "barrier"}))
    got = []
    while (frame := await recv(ws))["type"] != "pong":
        if frame["type"] != "account" or frame["event"] != "mark":
            got.append(frame)
    return got


async def events_until(ws, last_seq: int) -> list[dict]:
    """The account events that arrive up to the one numbered `last_seq` (marks left out)."""
    got: list[dict] = []
    while not got or got[-1].get("seq") != last_seq:
        frame = await recv(ws)
        if frame["type"] != "account" or frame["event"] != "mark":
            got.append(frame)
    return got


async def on_account(ws_url: str, token: str, since: int | None = None):
    ws = await websockets.connect(ws_url)
    assert (await recv(ws))["type"] == "welcome"
    await ws.send(json.dumps({"op": "auth", "token": token}))
    assert (await recv(ws))["type"] == "authenticated"
    subscribe = {"op": "subscribe", "channels": ["account"], **({"since": since} if since is not None else {})}
    await ws.send(json.dumps(subscribe))
    assert (await recv(ws))["type"] == "subscribed"
    return ws


async def test_a_bot_that_was_away_gets_what_it_missed_in_order_then_the_live_events(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    token = auth["Authorization"].removeprefix("Bearer ")
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    ws = await on_account(platform.ws_url, token)
    opened = (await api.post("/positions", headers=auth, json=ORDER)).json()
    order = (await api.post("/orders", headers=auth, json=LIMIT)).json()
    seen = [await recv(ws) for _ in range(3)]
    assert [(f["seq"], f["type"], f["event"]) for f in seen] == [
        (1, "position", "opened"), (2, "account", "snapshot"), (3, "order", "accepted")]
    await ws.close()

    # While it is away: a close (two events) and a cancel.
    await api.post(f"/positions/{opened['id']}/close", headers=auth)
    await api.delete(f"/orders/{order['id']}", headers=auth)

    ws = await on_account(platform.ws_url, token, since=3)
    try:
        missed = await account_frames_until_pong(ws)
        assert [(f["seq"], f["type"], f["event"]) for f in missed] == [
            (4, "position", "closed"), (5, "account", "snapshot"), (6, "order", "cancelled")]
        stored = (await api.get("/account/events", params={"since": 3}, headers=auth)).json()
        assert missed == stored  # the very frames that went out live
        await api.post("/positions", headers=auth, json=ORDER)  # and live again, after them
        assert [f["seq"] for f in await events_until(ws, 8)] == [7, 8]
        assert await account_frames_until_pong(ws) == []  # nothing twice
    finally:
        await ws.close()


async def test_away_longer_than_the_events_are_kept_gets_resume_gap_and_the_state_to_start_from(
        platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    token = auth["Authorization"].removeprefix("Bearer ")
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    opened = (await api.post("/positions", headers=auth, json=ORDER)).json()
    order = (await api.post("/orders", headers=auth, json=LIMIT)).json()  # seqs 1 to 3
    uid = (await Users.select(Users.id).where(Users.email == email).first().run())["id"]
    long_ago = time.time_ns() // 1_000_000 - platform.settings.retention.account_event_hours * HOUR_MS - HOUR_MS
    await AccountEvents.update({AccountEvents.created_at: long_ago}).where(AccountEvents.user_id == uid).run()
    await platform.dbproc.retention.purge()

    ws = await on_account(platform.ws_url, token, since=1)
    try:
        gap, state = await recv(ws), await recv(ws)
        assert gap["type"] == "error" and gap["code"] == "resume_gap"
        assert state["type"] == "account_state" and state["seq"] == 3
        assert [p["id"] for p in state["positions"]] == [opened["id"]]
        assert [o["id"] for o in state["orders"]] == [order["id"]]
        account = (await api.get("/account", headers=auth)).json()
        assert (state["account"]["balance"], state["account"]["used_margin"]) == (account["balance"],
                                                                                  account["used_margin"])
        await api.post(f"/positions/{opened['id']}/close", headers=auth)
        assert [f["seq"] for f in await account_frames_until_pong(ws)] == [4, 5]  # then on from the state
    finally:
        await ws.close()


async def test_the_client_library_yields_each_event_once_and_in_order_across_a_lost_connection(
        platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    forwarder = Forwarder(int(platform.ws_url.rsplit(":", 1)[1].split("/")[0]))
    await forwarder.start()
    feed = FeedClient(f"ws://127.0.0.1:{forwarder.port}/ws", channels=["account"],
                      token=auth["Authorization"].removeprefix("Bearer "), backoff=Backoff(initial=0.05, cap=0.2))
    got: list = []

    async def until(done, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            async for event in feed.events():
                got.append(event)
                if done():
                    return

    def seqs() -> list[int]:
        return [e.seq for e in got if isinstance(e, PositionFrame | OrderFrame | AccountFrame) and e.seq is not None]

    async with feed:
        await until(lambda: isinstance(got[-1], StateChanged) and got[-1].state is FeedState.LIVE)
        await asyncio.sleep(0.2)  # signed in and on `account`
        opened = (await api.post("/positions", headers=auth, json=ORDER)).json()
        await until(lambda: seqs() == [1, 2])  # opened, snapshot
        await forwarder.cut()
        # While the connection is down, the position closes (a stop-out or a fill would be missed the same way).
        closed = (await api.post(f"/positions/{opened['id']}/close", headers=auth)).json()
        await until(lambda: isinstance(got[-1], StateChanged) and got[-1].state is FeedState.RECONNECTING)
        await forwarder.start()
        await until(lambda: seqs()[-1:] == [4])
        await api.post("/positions", headers=auth, json=ORDER)
        await until(lambda: seqs()[-1:] == [6])
        await asyncio.sleep(0.3)  # anything repeated would come now
    await forwarder.cut()
    assert seqs() == [1, 2, 3, 4, 5, 6]  # each exactly once, in order
    closes = [e for e in got if isinstance(e, PositionFrame) and e.event == "closed"]
    assert [c.position.id for c in closes] == [closed["id"]] and feed.account_seq == 6
    assert feed.connections == 2


async def test_the_terminal_tells_of_a_take_profit_that_hit_while_its_connection_was_down(
        platform, api, mailbox, email):
    from cfd_client import ApiClient
    from cfd_tui.app import create_app
    from cfd_tui.screens.dashboard import DashboardScreen

    class ThroughForwarder(ApiClient):
        async def feed(self, channels=("prices.*",), **options):
            return FeedClient(f"ws://127.0.0.1:{forwarder.port}/ws", channels=channels, token=self.token, **options)

    async def until(pilot, condition, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "timed out waiting for the terminal"
            await pilot.pause(0.05)

    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "100.00", "100.00")  # broker 99.97 / 100.03
    forwarder = Forwarder(int(platform.ws_url.rsplit(":", 1)[1].split("/")[0]))
    await forwarder.start()
    app = create_app(platform.base_url, ThroughForwarder(platform.base_url,
                                                         token=auth["Authorization"].removeprefix("Bearer ")),
                     session_store=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.feed_state is FeedState.LIVE)
        await pilot.pause(0.3)  # on `account`
        opened = (await api.post("/positions", headers=auth, json={**ORDER, "take_profit": "105.00"})).json()
        await until(pilot, lambda: opened["id"] in app.portfolio.positions)
        await forwarder.cut()
        await until(pilot, lambda: app.feed_state is FeedState.RECONNECTING)
        await set_price(platform, "SOL_USDC", "110.00", "110.00")  # the take-profit hits while it is away
        await asyncio.sleep(0.5)
        await forwarder.start()
        await until(pilot, lambda: any(title == "Take-profit" for _, title, _ in app.notice_log))
        await until(pilot, lambda: opened["id"] not in app.portfolio.positions)
    await forwarder.cut()
