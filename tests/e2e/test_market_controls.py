"""Market controls and trading costs through the public API: an operator closes a market to new positions, halts
it, widens its spread, changes its costs and leverage (`PATCH /admin/markets/{symbol}`); traders see it at once
in `GET /markets`, in their quotes and in what they can do, pay commission on each fill, and every change is in
the operators' audit."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import msgspec
import pytest
import websockets
from helpers import another_server, set_price, signed_in

from shared.markets import MARKETS, SETTING_FIELDS

D = Decimal


async def eventually(check, timeout: float = 10.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > end:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def admin(platform, api):
    """The operator's headers; afterwards every market is set back to the catalogue's terms (the platform is
    shared by the whole session)."""
    token = platform.settings.admin_token_file.read_text().strip()
    headers = {"Authorization": f"Bearer {token}", "Cfd-Operator": "ada.ops"}
    yield headers
    for market in MARKETS.values():
        body = {name: msgspec.to_builtins(getattr(market, name)) for name in SETTING_FIELDS}
        restored = await api.patch(f"/admin/markets/{market.symbol}", headers=headers, json=body)
        assert restored.status_code == 200, restored.text


async def market(api, symbol: str) -> dict:
    return next(m for m in (await api.get("/markets")).json() if m["symbol"] == symbol)


async def newest_audit(api, admin) -> list:
    return (await api.get("/admin/audit?limit=1", headers=admin)).json()


def error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


async def test_markets_show_their_costs_and_status(api):
    eth = await market(api, "ETH_USDC")
    assert eth["status"] == "open"
    assert (eth["commission_rate"], eth["financing_long_rate"], eth["financing_short_rate"]) == ("0.0005", "0.22",
                                                                                                 "-0.05")


async def test_close_only_refuses_opening_but_positions_still_close(platform, api, mailbox, email, admin):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "150.00", "150.00")
    held = (await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long", "qty": "2",
                                                             "leverage": 2})).json()

    changed = await api.patch("/admin/markets/sol_usdc", headers=admin, json={"status": "close_only"})
    assert changed.status_code == 200 and changed.json()["status"] == "close_only"
    assert (await market(api, "SOL_USDC"))["status"] == "close_only"

    refused = error(await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "short",
                                                                     "qty": "1"}), 422)
    assert refused["code"] == "market_close_only" and refused["details"]["symbol"] == "SOL_USDC"
    part = await api.post(f"/positions/{held['id']}/close", headers=auth, json={"qty": "1"})
    rest = await api.post(f"/positions/{held['id']}/close", headers=auth)
    assert part.status_code == rest.status_code == 200
    assert (await api.get("/positions?status=open", headers=auth)).json() == []
    eth = await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "long", "qty": "0.01"})
    assert eth.status_code in (201, 503)  # other markets trade as before (503: no ETH price in this test)

    [row, *_] = (await api.get("/admin/audit?subject=SOL_USDC", headers=admin)).json()
    assert row["operator"] == "ada.ops" and row["action"] == "market.update" and row["subject"] == "SOL_USDC"
    assert row["before"]["status"] == "open" and row["after"]["status"] == "close_only"
    assert row["before"]["spread_bps"] == row["after"]["spread_bps"] == "6"
    assert row["address"] == "127.0.0.1"


async def test_a_halted_market_trades_nothing_and_its_stops_wait_for_it_to_reopen(platform, api, mailbox, email,
                                                                                  admin):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "BNB_USDC", "600.00", "600.10")  # broker 599.82 / 600.29
    long = (await api.post("/positions", headers=auth, json={"symbol": "BNB_USDC", "side": "long", "qty": "1",
                                                             "leverage": 10, "stop_loss": "590"})).json()
    assert (await api.patch("/admin/markets/BNB_USDC", headers=admin, json={"status": "halted"})).status_code == 200

    opening = error(await api.post("/positions", headers=auth, json={"symbol": "BNB_USDC", "side": "long",
                                                                     "qty": "1"}), 422)
    closing = error(await api.post(f"/positions/{long['id']}/close", headers=auth), 422)
    assert opening["code"] == closing["code"] == "market_halted"

    await set_price(platform, "BNB_USDC", "589.50", "589.60")  # bid 589.32: through the stop, while halted
    await asyncio.sleep(1.0)
    assert (await api.get(f"/positions/{long['id']}", headers=auth)).json()["status"] == "open"

    assert (await api.patch("/admin/markets/BNB_USDC", headers=admin, json={"status": "open"})).status_code == 200
    await set_price(platform, "BNB_USDC", "589.50", "589.70")  # the next tick after it reopens

    async def closed():
        p = (await api.get(f"/positions/{long['id']}", headers=auth)).json()
        return p if p["status"] == "closed" else None

    done = await eventually(closed)
    assert done["close_reason"] == "stop_loss" and D(done["close_price"]) == D("589.32")


async def test_a_new_spread_is_in_the_next_quote_on_every_path(platform, api, mailbox, email, admin):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "3000.00", "3000.50")  # 5 bps: 2999.25 / 3001.26
    ws_url = (await api.get("/info")).json()["ws_url"]
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["prices.ETH_USDC"]}))

        async def price(bid: str, ask: str) -> dict:
            async with asyncio.timeout(10):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "price" and (frame["bid"], frame["ask"]) == (bid, ask):
                        return frame

        first = await price("2999.25", "3001.26")
        changed = await api.patch("/admin/markets/ETH_USDC", headers=admin, json={"spread_bps": "20"})
        assert changed.status_code == 200 and changed.json()["spread_bps"] == "20"
        requoted = await price("2997.00", "3003.51")  # the same exchange prices, widened by 20 bps, at once
        assert requoted["ts"] == first["ts"]
        await set_price(platform, "ETH_USDC", "3010.00", "3010.50")
        await price("3006.99", "3013.52")  # and every tick after it
    assert (await market(api, "ETH_USDC"))["spread_bps"] == "20"
    quote = (await api.get("/prices/ETH_USDC")).json()
    assert (quote["bid"], quote["ask"]) == ("3006.99", "3013.52")
    opened = (await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "long", "qty": "1",
                                                               "leverage": 10})).json()
    assert opened["entry_price"] == "3013.52"  # the dbproc fills at the new spread too


async def test_commission_is_booked_on_opening_and_on_closing(platform, api, mailbox, email, admin):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "3000.00", "3000.50")  # broker 2999.25 / 3001.26
    opened = (await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "long", "qty": "2",
                                                               "leverage": 10})).json()
    assert opened["commission"] == "3.00" and opened["financing"] == "0.00"  # 2 × 3001.26 × 0.05 %
    ledger = (await api.get("/ledger", headers=auth)).json()
    assert [(e["kind"], e["amount"], e["reference"]) for e in ledger] == [
        ("commission", "-3.00", opened["id"]), ("deposit", "10000.00", "demo")]
    assert (await api.get("/account", headers=auth)).json()["balance"] == "9997.00"

    await set_price(platform, "ETH_USDC", "3100.00", "3100.50")  # bid 3099.22
    closed = (await api.post(f"/positions/{opened['id']}/close", headers=auth)).json()
    assert closed["realized_pnl"] == "195.92" and closed["commission"] == "6.10"  # + 2 × 3099.22 × 0.05 % = 3.10
    kinds = sorted((e["kind"], e["amount"]) for e in (await api.get("/ledger", headers=auth)).json())
    assert kinds == [("commission", "-3.00"), ("commission", "-3.10"), ("deposit", "10000.00"),
                     ("realized_pnl", "195.92")]
    assert (await api.get("/account", headers=auth)).json()["balance"] == "10189.82"  # 10000 − 3.00 + 195.92 − 3.10

    assert (await api.patch("/admin/markets/ETH_USDC", headers=admin,
                            json={"commission_rate": "0.001"})).status_code == 200
    dearer = (await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "short", "qty": "1",
                                                               "leverage": 10})).json()
    assert dearer["commission"] == "3.10"  # 1 × 3099.22 × 0.1 %: the new rate, at once


async def test_a_lower_maximum_leverage_holds_for_the_next_order(platform, api, mailbox, email, admin):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "150.00", "150.00")
    assert (await api.patch("/admin/markets/SOL_USDC", headers=admin, json={"max_leverage": 5})).status_code == 200
    refused = error(await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long",
                                                                     "qty": "1", "leverage": 10}), 422)
    assert refused["code"] == "invalid_leverage" and refused["details"]["max_leverage"] == 5
    allowed = await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long", "qty": "1",
                                                               "leverage": 5})
    assert allowed.status_code == 201


async def test_every_server_applies_a_change_at_once(platform, api, admin):
    async with another_server(platform) as second:
        await asyncio.wait_for(second.app.state.market.terms.loaded.wait(), 10)
        assert (await api.patch("/admin/markets/DOGE_USDC", headers=admin,
                                json={"status": "halted", "spread_bps": "25"})).status_code == 200
        import httpx

        async with httpx.AsyncClient(base_url=second.base_url + "/api/v1") as other:
            async def seen():
                doge = next(m for m in (await other.get("/markets")).json() if m["symbol"] == "DOGE_USDC")
                return doge if doge["status"] == "halted" else None

            doge = await eventually(seen, timeout=5)
            assert doge["spread_bps"] == "25"
    # and a server that starts after the change asks a dbproc for the settings in force
    async with another_server(platform) as late:
        await asyncio.wait_for(late.app.state.market.terms.loaded.wait(), 10)
        assert late.app.state.market.markets.market_of("DOGE_USDC").status == "halted"


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"commission_rate": "-0.001"}, 422, "invalid_commission_rate"),
    ({"commission_rate": "0.5"}, 422, "invalid_commission_rate"),
    ({"financing_long_rate": "2"}, 400, "invalid_number"),
    ({"spread_bps": "-3"}, 422, "invalid_spread_bps"),
    ({"spread_bps": "lots"}, 400, "invalid_number"),
    ({"status": "paused"}, 400, "validation_error"),
    ({"status": None}, 400, "validation_error"),
    ({"max_leverage": 0}, 400, "validation_error"),
    ({"max_leverage": "ten"}, 400, "validation_error"),
    ({"maker_fee": "0.001"}, 400, "validation_error"),
    ({}, 400, "nothing_to_change"),
    ([], 400, "validation_error"),
])
async def test_a_bad_change_is_refused_and_changes_nothing(api, admin, body, status, code):
    before = (await api.get("/markets")).json()
    audited = await newest_audit(api, admin)
    refused = error(await api.patch("/admin/markets/SOL_USDC", headers=admin, json=body), status)
    assert refused["code"] == code and refused["message"]
    assert (await api.get("/markets")).json() == before
    assert await newest_audit(api, admin) == audited


async def test_only_operators_change_markets_and_only_known_ones(api, admin):
    assert error(await api.patch("/admin/markets/SOL_USDC", json={"status": "halted"}), 401)["code"] == \
        "invalid_admin_token"
    unknown = error(await api.patch("/admin/markets/XRP_USDC", headers=admin, json={"status": "halted"}), 404)
    assert unknown["code"] == "unknown_market"
    named = error(await api.patch("/admin/markets/SOL_USDC", headers={**admin, "Cfd-Operator": "a b"},
                                  json={"status": "halted"}), 400)
    assert named["code"] == "invalid_operator"
    assert (await market(api, "SOL_USDC"))["status"] == "open"


async def test_a_change_that_changes_nothing_is_not_audited(api, admin):
    audited = await newest_audit(api, admin)
    same = await api.patch("/admin/markets/SOL_USDC", headers=admin, json={"status": "open", "spread_bps": "6.0"})
    assert same.status_code == 200 and same.json()["spread_bps"] == "6"
    assert await newest_audit(api, admin) == audited
