"""Alerts: a price crossing a level, or the margin level falling below one, fires once, on the account
channel and by mail when asked; bad alerts are refused and change nothing."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import websockets
from helpers import set_price, signed_in

D = Decimal


async def eventually(check, timeout: float = 10.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (result := await check()):
        if loop.time() > end:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.02)
    return result


async def alert_frames(ws, count: int) -> list[dict]:
    frames = []
    while len(frames) < count:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == "alert":
            frames.append(frame)
    return frames


async def test_price_alerts_fire_once_on_the_channel_and_by_mail(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "100.00", "100.00")  # broker bid 99.97
    async with websockets.connect(platform.ws_url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": auth["Authorization"].split()[1]}))
        await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
        above = await api.post("/alerts", headers=auth, json={"symbol": "SOL_USDC", "condition": "above",
                                                               "price": "110.00", "note": "take profit?",
                                                               "notify": ["ws", "mail"]})
        assert above.status_code == 201, above.text
        assert above.json()["status"] == "active" and above.json()["notify"] == ["ws", "mail"]
        below = (await api.post("/alerts", headers=auth, json={"symbol": "SOL_USDC", "condition": "below",
                                                               "price": "90.00"})).json()
        assert [f["event"] for f in await alert_frames(ws, 2)] == ["created", "created"]

        await set_price(platform, "SOL_USDC", "109.00", "109.00")  # bid 108.96: not yet
        await set_price(platform, "SOL_USDC", "111.00", "111.00")  # bid 110.96 ≥ 110
        (fired,) = await alert_frames(ws, 1)
        assert fired["event"] == "triggered" and fired["alert"]["id"] == above.json()["id"]
        assert D(fired["price"]) == D("110.96") and fired["alert"]["status"] == "triggered"
        for _ in range(3):
            await set_price(platform, "SOL_USDC", "112.00", "112.00")
        await set_price(platform, "SOL_USDC", "89.00", "89.00")  # bid 88.97 ≤ 90: the other one
        (other,) = await alert_frames(ws, 1)
        assert other["alert"]["id"] == below["id"]

    listed = (await api.get("/alerts?status=triggered", headers=auth)).json()
    assert sorted(a["id"] for a in listed) == sorted([above.json()["id"], below["id"]])
    assert (await api.get("/alerts?status=active", headers=auth)).json() == []
    mail = (await mailbox.wait_for(email, 2))[1]  # the sign-up's code, then the alert; none for `below`
    assert "SOL_USDC is above 110" in mail["Subject"] and "take profit?" in mail.get_content()
    await asyncio.sleep(0.3)
    assert len(mailbox.messages(email)) == 2


async def test_a_margin_level_alert_fires_when_the_level_falls_below_it(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "BTC_USDC", "100000.0", "100000.0")
    opened = await api.post("/positions", headers=auth, json={"symbol": "BTC_USDC", "side": "long", "qty": "1",
                                                             "leverage": 50})  # margin ≈ 2,002; level ≈ 500 %
    assert opened.status_code == 201, opened.text
    alert = (await api.post("/alerts", headers=auth, json={"kind": "margin_level", "below": "300"})).json()
    assert alert["kind"] == "margin_level" and D(alert["below"]) == 300

    async def status() -> dict | None:
        alerts = (await api.get("/alerts", headers=auth)).json()
        return alerts[0] if alerts[0]["status"] == "triggered" else None

    await set_price(platform, "BTC_USDC", "99000.0", "99000.0")  # level ≈ 450 %: not yet
    await asyncio.sleep(0.5)
    assert (await api.get("/alerts", headers=auth)).json()[0]["status"] == "active"
    await set_price(platform, "BTC_USDC", "95000.0", "95000.0")  # equity ≈ 4,940: level ≈ 260 %
    fired = await eventually(status)
    assert D(fired["triggered_value"]) < 300


async def test_bad_alerts_are_refused_and_deleting_works_once(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    cases = [
        ({"condition": "above", "price": "1"}, 422, "invalid_alert"),
        ({"symbol": "SOL_USDC", "price": "1"}, 422, "invalid_alert"),
        ({"symbol": "SOL_USDC", "condition": "above", "price": "1.001"}, 422, "invalid_alert"),
        ({"symbol": "NOPE", "condition": "above", "price": "1"}, 404, "unknown_market"),
        ({"kind": "margin_level"}, 422, "invalid_alert"),
        ({"kind": "margin_level", "below": "150", "symbol": "SOL_USDC"}, 422, "invalid_alert"),
        ({"kind": "margin_level", "below": "-5"}, 422, "invalid_alert"),
        ({"symbol": "SOL_USDC", "condition": "sideways", "price": "1"}, 400, None),
        ({"symbol": "SOL_USDC", "condition": "above", "price": "1", "notify": ["sms"]}, 400, None),
    ]
    for body, status, code in cases:
        refused = await api.post("/alerts", headers=auth, json=body)
        assert refused.status_code == status, (body, refused.text)
        if code:
            assert refused.json()["error"]["code"] == code, (body, refused.text)
    assert (await api.get("/alerts", headers=auth)).json() == []
    alert = (await api.post("/alerts", headers=auth, json={"symbol": "ETH_USDC", "condition": "above",
                                                           "price": "9000.00"})).json()
    assert (await api.delete(f"/alerts/{alert['id']}", headers=auth)).status_code == 204
    gone = await api.delete(f"/alerts/{alert['id']}", headers=auth)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "alert_not_found"
    assert (await api.get("/alerts", headers=auth)).json() == []
