"""Account events numbered per user in the database: each command's events take the next numbers in its
transaction, one by one, never reused (a refused command takes none, a retried one takes none again), and
`GET /account/events` gives them back, oldest first, a page at a time, or `410 resume_gap` once they are gone."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from decimal import Decimal

from auth_helpers import assert_error
from helpers import set_price, signed_in

from cfd_dbproc.db.tables import AccountEvents, Users
from cfd_dbproc.retention import HOUR_MS
from shared.contracts.bus import MarginCallCommand

ORDER = {"symbol": "DOGE_USDC", "side": "long", "qty": "10", "leverage": 1}
NEXT = re.compile(r'^<([^>]+)>; rel="next"$')


async def events(api, auth, since: int = 0, **params) -> list[dict]:
    response = await api.get("/account/events", params={"since": since, **params}, headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


def described(frames: list[dict]) -> list[tuple[int, str, str]]:
    return [(f["seq"], f["type"], f["event"]) for f in frames]


async def user_id(email: str) -> str:
    return str((await Users.select(Users.id).where(Users.email == email).first().run())["id"])


async def test_each_users_events_are_numbered_one_by_one_and_a_refused_or_retried_command_takes_none(
        platform, api, mailbox, email):
    ann = await signed_in(api, mailbox, email)
    bob = await signed_in(api, mailbox, f"bob.{email}")
    await set_price(platform, "DOGE_USDC", "0.30000", "0.30001")
    assert await events(api, ann) == []  # nothing has happened to the account yet
    keyed = {**ann, "Idempotency-Key": "first-open"}
    opened = (await api.post("/positions", headers=keyed, json=ORDER)).json()
    refused = await api.post("/positions", headers=ann, json={**ORDER, "qty": "10000000"})
    assert refused.status_code == 422  # rolled back: no event, no number
    again = await api.post("/positions", headers=keyed, json=ORDER)
    assert again.status_code == 201 and again.json()["id"] == opened["id"]  # the retry is answered, not applied
    await api.post("/positions", headers=bob, json=ORDER)
    await api.post(f"/positions/{opened['id']}/close", headers=ann)

    mine = await events(api, ann)
    assert described(mine) == [(1, "position", "opened"), (2, "account", "snapshot"),
                               (3, "position", "closed"), (4, "account", "snapshot")]
    assert mine[0]["position"]["id"] == opened["id"] and mine[2]["position"]["status"] == "closed"
    assert described(await events(api, bob)) == [(1, "position", "opened"), (2, "account", "snapshot")]
    assert described(await events(api, ann, since=2)) == described(mine[2:])
    assert await events(api, ann, since=4) == []


async def test_commands_at_once_still_number_their_events_without_a_gap_or_a_repeat(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "DOGE_USDC", "0.30000", "0.30001")
    answers = await asyncio.gather(*(api.post("/positions", headers=auth, json=ORDER) for _ in range(8)))
    assert all(a.status_code == 201 for a in answers)
    numbered = await events(api, auth)
    assert [f["seq"] for f in numbered] == list(range(1, 17))
    assert sorted(f["position"]["id"] for f in numbered if f["type"] == "position") == sorted(
        a.json()["id"] for a in answers)


async def test_a_page_at_a_time_and_resume_gap_once_the_events_are_purged(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    operator = {"Authorization": f"Bearer {platform.app.state.operator_token}"}
    uid = await user_id(email)
    for amount in ("1", "2", "3", "4", "5"):
        response = await api.post(f"/admin/users/{uid}/deposit", headers=operator, json={"amount": amount})
        assert response.status_code == 200, response.text
    first = await api.get("/account/events", params={"since": 0, "limit": 2}, headers=auth)
    assert [f["seq"] for f in first.json()] == [1, 2]
    walked, url = [], NEXT.match(first.headers["link"]).group(1)
    assert "since=2" in url and "limit=2" in url
    while url:
        page = await api.get(url.removeprefix("/api/v1"), headers=auth)
        walked += [f["seq"] for f in page.json()]
        link = page.headers.get("link")
        url = NEXT.match(link).group(1) if link else None
    assert walked == [3, 4, 5]
    assert (await events(api, auth))[-1]["account"]["balance"] == "10015.00"

    # Three of them are older than the retention (72 h by default): the purge forgets them.
    long_ago = time.time_ns() // 1_000_000 - platform.settings.retention.account_event_hours * HOUR_MS - HOUR_MS
    await AccountEvents.update({AccountEvents.created_at: long_ago}).where(
        (AccountEvents.user_id == uuid.UUID(uid)) & (AccountEvents.seq <= 3)).run()
    assert (await platform.dbproc.retention.purge())["account_events"] >= 3
    assert [f["seq"] for f in await events(api, auth, since=3)] == [4, 5]  # still kept: still resumable
    for since in (0, 2, 6):  # before what is kept, or beyond the latest
        body = assert_error(await api.get("/account/events", params={"since": since}, headers=auth), 410,
                            "resume_gap")
        assert body["details"] == {"latest_seq": 5}
    assert_error(await api.get("/account/events", headers=auth), 400, "validation_error")  # since is needed
    assert_error(await api.get("/account/events", params={"since": -1}, headers=auth), 400, "validation_error")


async def test_a_margin_call_is_an_event_told_once_whichever_dbproc_saw_it(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    uid = await user_id(email)
    engine = platform.dbproc.trading

    def call(event: str) -> MarginCallCommand:
        return MarginCallCommand(user_id=uid, event=event, margin_level=Decimal("95.5"))  # type: ignore[arg-type]

    await engine.margin_call(call("margin_call"), "margin:a:1")
    await engine.margin_call(call("margin_call"), "margin:a:1")  # redelivered
    await engine.margin_call(call("margin_call"), "margin:b:2")  # another owner, around a handover
    await engine.margin_call(call("margin_call_cleared"), "margin:b:3")
    await engine.margin_call(call("margin_call_cleared"), "margin:a:4")
    told = await events(api, auth)
    assert described(told) == [(1, "account", "margin_call"), (2, "account", "margin_call_cleared")]
    assert told[0]["margin_level"] == "95.5"
