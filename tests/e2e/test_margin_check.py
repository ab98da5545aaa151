"""The margin check of an open counts every position the trader holds, though the engine remembers them between
commands instead of reading them again: whatever the trader did in between, and whichever engine did it."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from helpers import set_price, signed_in
from test_group_commit import ORDER, affordable_opens

from cfd_dbproc.trading.engine import TradingEngine
from cfd_dbproc.trading.store import TradingStore
from shared.contracts.bus import OpenCommand
from shared.contracts.rest import PositionCreate
from shared.errors import Rejected

D = Decimal
HELD_AT_MOST = affordable_opens(D("10000"))


async def _open(api, auth) -> tuple[int, str]:
    answer = await api.post("/positions", headers=auth, json=ORDER)
    return answer.status_code, answer.json()["id"] if answer.status_code == 201 else answer.json()["error"]["code"]


async def test_an_open_is_refused_once_the_positions_held_use_the_margin_whatever_came_between(platform, api,
                                                                                               mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "3000.00", "3000.50")
    held = []
    for _ in range(HELD_AT_MOST):
        status, position_id = await _open(api, auth)
        assert status == 201, position_id
        held.append(position_id)
        if len(held) == 3:  # a change that moves no margin, and a refusal, between the opens
            assert (await api.patch(f"/positions/{held[0]}", headers=auth, json={"take_profit": "3500"})
                    ).status_code == 200
            assert (await api.post("/positions", headers=auth, json={**ORDER, "qty": "1000"})).status_code == 422
    assert await _open(api, auth) == (422, "insufficient_margin")

    closed = await api.post(f"/positions/{held.pop()}/close", headers=auth, json={})
    assert closed.status_code == 200, closed.text
    status, position_id = await _open(api, auth)
    assert status == 201, position_id  # the close freed the margin of one
    assert await _open(api, auth) == (422, "insufficient_margin")

    halved = await api.post(f"/positions/{held[0]}/close", headers=auth, json={"qty": "1"})
    assert halved.status_code == 200, halved.text
    assert (await api.post("/positions", headers=auth, json={**ORDER, "qty": "1"})).status_code == 201
    assert await _open(api, auth) == (422, "insufficient_margin")
    account = (await api.get("/account", headers=auth)).json()
    positions = (await api.get("/positions?status=open&limit=100", headers=auth)).json()
    assert D(account["used_margin"]) == sum(D(p["margin"]) for p in positions)


async def test_positions_another_engine_opened_count_in_the_next_margin_check(platform, api, mailbox, email):
    """During a rebalance a second dbproc can apply some of a trader's commands: the first one's memory of the
    trader's positions is then out of date, and must not be used."""
    auth = await signed_in(api, mailbox, email)
    user_id = (await api.get("/auth/me", headers=auth)).json()["user"]["id"]
    await set_price(platform, "ETH_USDC", "3000.00", "3000.50")
    for _ in range(2):  # the platform's engine now remembers two positions
        assert (await _open(api, auth))[0] == 201
    other = TradingEngine(TradingStore(platform.db), platform.bus, platform.dbproc.topics.events,
                          platform.dbproc.quotes)
    order = PositionCreate(symbol=ORDER["symbol"], side=ORDER["side"], qty=D(ORDER["qty"]), leverage=ORDER["leverage"])
    for _ in range(HELD_AT_MOST - 2):
        await other.open(OpenCommand(user_id=user_id, order=order), uuid.uuid4().hex)
    with pytest.raises(Rejected):  # the other engine too knows the margin is used
        await other.open(OpenCommand(user_id=user_id, order=order), uuid.uuid4().hex)

    assert await _open(api, auth) == (422, "insufficient_margin")
    positions = (await api.get("/positions?status=open&limit=100", headers=auth)).json()
    assert len(positions) == HELD_AT_MOST
