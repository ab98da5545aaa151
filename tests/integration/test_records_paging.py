"""`GET /positions` and `GET /ledger` a page at a time: a walk by cursor sees every record exactly once, even
while new ones arrive, and a cursor the list did not give out is a 400."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
from auth_helpers import assert_error
from helpers import set_price, signed_in

ORDER = {"symbol": "DOGE_USDC", "side": "long", "qty": "10", "leverage": 1}
NEXT = re.compile(r'^<([^>]+)>; rel="next"$')


async def _open(api: httpx.AsyncClient, auth: dict) -> str:
    response = await api.post("/positions", headers=auth, json=ORDER)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _walk(api: httpx.AsyncClient, auth: dict, path: str, during=None) -> list[str]:
    """Every id of the list at `path`, following the `next` links; `during` runs after the first page."""
    ids: list[str] = []
    url: str | None = path
    pages = 0
    while url is not None:
        response = await api.get(url.removeprefix("/api/v1"), headers=auth)
        assert response.status_code == 200, response.text
        ids += [row["id"] for row in response.json()]
        link = response.headers.get("link")
        url = NEXT.match(link).group(1) if link else None
        pages += 1
        if pages == 1 and during is not None:
            await during()
    return ids


async def test_walking_positions_and_ledger_by_cursor_sees_each_record_once_while_new_ones_arrive(
        platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "DOGE_USDC", "0.30000", "0.30001")
    opened = [await _open(api, auth) for _ in range(7)]
    for position_id in opened[:5]:
        response = await api.post(f"/positions/{position_id}/close", headers=auth)
        assert response.status_code == 200, response.text
    arrived: list[str] = []

    async def more() -> None:  # two opens and a close in the middle of each walk
        arrived.extend([await _open(api, auth), await _open(api, auth)])
        closed = await api.post(f"/positions/{arrived[-1]}/close", headers=auth)
        assert closed.status_code == 200, closed.text

    walked = await _walk(api, auth, "/positions?limit=3", during=more)
    assert sorted(walked) == sorted(opened)  # newer records sort before the cursor: not in this walk
    ledger_before = [e["id"] for e in (await api.get("/ledger", headers=auth)).json()]
    # the demo deposit, and six closes that each booked a PnL and a commission (the opening's 0.003 is carried
    # to the close, which books 0.01)
    assert len(ledger_before) == 13
    walked_ledger = await _walk(api, auth, "/ledger?limit=4", during=more)
    assert walked_ledger == ledger_before  # the same records, in the same newest-first order
    closed_walk = await _walk(api, auth, "/positions?status=closed&limit=2")
    everything = (await api.get("/positions?status=closed", headers=auth)).json()
    assert closed_walk == [p["id"] for p in everything] and len(closed_walk) == 7  # five, then two, closed


async def test_a_full_last_page_has_no_next_link_and_the_limit_is_capped(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    response = await api.get("/ledger?limit=1", headers=auth)  # just the demo deposit
    assert response.status_code == 200 and len(response.json()) == 1
    assert "link" not in response.headers
    assert_error(await api.get("/ledger?limit=1001", headers=auth), 400, "validation_error")
    assert_error(await api.get("/positions?limit=0", headers=auth), 400, "validation_error")


async def test_a_cursor_the_list_did_not_give_out_is_a_400(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "DOGE_USDC", "0.30000", "0.30001")
    for _ in range(2):
        await _open(api, auth)
    link = (await api.get("/positions?limit=1", headers=auth)).headers["link"]
    positions_cursor = re.search(r"cursor=([^&>]+)", link).group(1)
    assert (await api.get(f"/positions?limit=1&cursor={positions_cursor}", headers=auth)).status_code == 200
    for bad in ("nonsense", "", "%00", "W10", positions_cursor[:-3], "x" * 500, str(uuid.uuid4())):
        for path in ("/positions", "/ledger"):
            response = await api.get(path, params={"cursor": bad}, headers=auth)
            body = assert_error(response, 400, "invalid_cursor")
            assert body["details"] == {"field": "cursor"}
    # a cursor of one list is not one of another
    assert_error(await api.get(f"/ledger?cursor={positions_cursor}", headers=auth), 400, "invalid_cursor")
    assert_error(await api.get(f"/positions?status=closed&cursor={positions_cursor}", headers=auth), 400,
                 "invalid_cursor")


async def test_the_client_library_walks_every_page(platform, api, mailbox, email):
    from cfd_client import ApiClient

    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "DOGE_USDC", "0.30000", "0.30001")
    opened = [await _open(api, auth) for _ in range(5)]
    for position_id in opened[:4]:
        assert (await api.post(f"/positions/{position_id}/close", headers=auth)).status_code == 200
    async with ApiClient(platform.base_url, token=auth["Authorization"].removeprefix("Bearer ")) as client:
        everything = [p.id async for p in client.all_positions(status=None, page_size=2)]
        closed = [p.id async for p in client.all_positions(page_size=3)]
        ledger = [e.id async for e in client.all_ledger(page_size=2)]
    assert everything == [p["id"] for p in (await api.get("/positions?limit=100", headers=auth)).json()]
    assert sorted(everything) == sorted(opened)
    assert sorted(closed) == sorted(opened[:4])
    assert ledger == [e["id"] for e in (await api.get("/ledger?limit=100", headers=auth)).json()]
    assert len(ledger) == 9  # the demo deposit and four closes, each a PnL and a commission


async def test_the_operator_walks_every_traders_positions_by_cursor(platform, api, mailbox, email):
    operator = {"Authorization": f"Bearer {platform.app.state.operator_token}"}
    await set_price(platform, "DOGE_USDC", "0.30000", "0.30001")
    ann = await signed_in(api, mailbox, email)
    bob = await signed_in(api, mailbox, f"bob.{email}")
    opened = [await _open(api, trader) for trader in (ann, bob, ann, bob, ann)]
    for position_id, trader in zip(opened[:2], (ann, bob), strict=True):
        assert (await api.post(f"/positions/{position_id}/close", headers=trader)).status_code == 200

    walked = await _walk(api, operator, "/admin/positions?limit=2")
    closed = await _walk(api, operator, "/admin/positions?status=closed&limit=1")
    still_open = await _walk(api, operator, "/admin/positions?status=open&limit=2")

    mine = set(opened)  # the platform may hold other tests' positions too
    assert [p for p in walked if p in mine] == opened[::-1]  # newest first, each once
    assert len(walked) == len(set(walked))
    assert [p for p in closed if p in mine] == opened[1::-1]
    assert [p for p in still_open if p in mine] == opened[:1:-1]
    assert_error(await api.get("/admin/positions?cursor=nonsense", headers=operator), 400, "invalid_cursor")


async def _ids(api: httpx.AsyncClient, auth: dict, path: str, **params) -> list[str]:
    response = await api.get(path, params=params, headers=auth)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()]


async def _apart() -> None:
    """Let the clock move on, so records made before and after have different times (epoch ms)."""
    await asyncio.sleep(0.005)


async def test_since_and_until_keep_each_list_to_a_window_of_its_own_time(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "DOGE_USDC", "0.30000", "0.30001")
    positions = []
    for _ in range(3):
        await _apart()
        positions.append((await api.post("/positions", headers=auth, json=ORDER)).json())
    first, second, third = positions
    # opened_at for the open and the whole list, newest first; since is inclusive, until exclusive
    assert await _ids(api, auth, "/positions", since=second["opened_at"]) == [third["id"], second["id"]]
    assert await _ids(api, auth, "/positions", until=second["opened_at"]) == [first["id"]]
    assert await _ids(api, auth, "/positions", status="open", since=second["opened_at"],
                      until=third["opened_at"]) == [second["id"]]
    # closed_at for status=closed: the first opened is the last closed
    closes = []
    for position in (third, first):
        await _apart()
        closes.append((await api.post(f"/positions/{position['id']}/close", headers=auth)).json())
    assert await _ids(api, auth, "/positions", status="closed", since=closes[1]["closed_at"]) == [first["id"]]
    assert await _ids(api, auth, "/positions", status="closed", until=closes[1]["closed_at"]) == [third["id"]]
    # created_at for the ledger: the demo deposit, the opens' commissions, then the two closes
    ledger = (await api.get("/ledger", headers=auth)).json()  # newest first
    pnl = [e for e in ledger if e["kind"] == "realized_pnl"]
    assert len(pnl) == 2 and ledger[-1]["kind"] == "deposit"
    cut = pnl[-1]["created_at"]  # the first close
    assert await _ids(api, auth, "/ledger", since=cut) == [e["id"] for e in ledger if e["created_at"] >= cut]
    assert await _ids(api, auth, "/ledger", until=cut) == [e["id"] for e in ledger if e["created_at"] < cut]
    # created_at for the orders
    orders = []
    for price in ("0.20000", "0.21000", "0.22000"):
        await _apart()
        placed = await api.post("/orders", headers=auth, json={**ORDER, "type": "limit", "price": price})
        assert placed.status_code == 201, placed.text
        orders.append(placed.json())
    assert await _ids(api, auth, "/orders", since=orders[1]["created_at"]) == [orders[2]["id"], orders[1]["id"]]
    assert await _ids(api, auth, "/orders", status="working", until=orders[1]["created_at"]) == [orders[0]["id"]]


async def test_a_walk_inside_a_window_keeps_to_it(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "DOGE_USDC", "0.30000", "0.30001")
    opened = []
    for _ in range(5):
        await _apart()
        opened.append((await api.post("/positions", headers=auth, json=ORDER)).json())
    since, until = opened[1]["opened_at"], opened[4]["opened_at"]
    walked = await _walk(api, auth, f"/positions?limit=1&since={since}&until={until}")
    assert walked == [p["id"] for p in opened[3:0:-1]]  # the 4th, 3rd and 2nd: each once, newest first
    first_page = await api.get(f"/positions?limit=1&since={since}&until={until}", headers=auth)
    link = NEXT.match(first_page.headers["link"]).group(1)
    assert f"since={since}" in link and f"until={until}" in link  # the next page stays in the window
    assert_error(await api.get("/positions?since=-1", headers=auth), 400, "validation_error")
    assert_error(await api.get("/ledger?until=soon", headers=auth), 400, "validation_error")
    assert await _ids(api, auth, "/positions", since=until, until=since) == []  # an empty window
