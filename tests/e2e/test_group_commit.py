"""Group commit seen from outside: a burst of one trader's orders is applied in shared transactions, and each
order still gets its own answer, its own events and its own ledger entry, exactly as if applied one by one."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from helpers import ledger_totals, set_price, signed_in

D = Decimal
BURST = 30
ORDER = {"symbol": "ETH_USDC", "side": "long", "qty": "2", "leverage": 10}
# At bid 3000.00 / ask 3000.50 the broker fills a long at 3001.26 and marks it at 2999.25 (test_trading.py):
MARGIN, FEE, MARKED_LOSS = D("600.25"), D("3.00"), D("4.02")


def affordable_opens(balance: Decimal) -> int:
    """How many of these opens the margin rule admits one after another: an open needs its margin and its
    commission in free margin (equity less used margin), and each open held lowers equity by its commission
    and its marked loss."""
    held = 0
    while balance - held * (FEE + MARKED_LOSS) - held * MARGIN >= MARGIN + FEE:
        held += 1
    return held


async def test_a_burst_of_opens_shares_transactions_and_each_open_is_answered_as_alone(platform, api, mailbox,
                                                                                      email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "3000.00", "3000.50")
    responder = platform.dbproc.responder
    grouped_before = responder.grouped
    same_key = {**auth, "Idempotency-Key": "burst-twice"}

    answers = await asyncio.gather(
        *(api.post("/positions", headers=same_key if n in (3, 4) else auth, json=ORDER) for n in range(BURST)))

    assert responder.grouped > grouped_before  # some of the burst shared a transaction
    opened = [a.json() for a in answers if a.status_code == 201]
    refused = [a.json() for a in answers if a.status_code != 201]
    assert {e["error"]["code"] for e in refused} <= {"insufficient_margin"}, refused
    assert answers[3].json()["id"] == answers[4].json()["id"]  # one order sent twice: applied once
    distinct = {p["id"] for p in opened}
    assert len(distinct) == affordable_opens(D("10000")) == len(opened) - 1

    held = (await api.get("/positions?status=open&limit=100", headers=auth)).json()
    assert {p["id"] for p in held} == distinct
    account = (await api.get("/account", headers=auth)).json()
    assert D(account["balance"]) == D("10000") - FEE * len(distinct)
    assert D(account["free_margin"]) >= 0
    totals, balance = await ledger_totals(api, auth)
    assert balance == D(account["balance"]) and totals["commission"] == -FEE * len(distinct)


async def test_a_refusal_inside_a_group_undoes_only_itself(platform, api, mailbox, email):
    """Closes of one position sent at once: the first closes it, the rest are refused as already closed, and the
    refusals leave no trace in the ledger."""
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "3000.00", "3000.50")
    positions = [(await api.post("/positions", headers=auth, json=ORDER)).json() for _ in range(3)]
    target = positions[0]["id"]

    answers = await asyncio.gather(
        *(api.post(f"/positions/{target}/close", headers=auth, json={}) for _ in range(12)),
        api.patch(f"/positions/{positions[1]['id']}", headers=auth, json={"take_profit": "3500"}))

    closes = answers[:-1]
    assert sorted(a.status_code for a in closes) == [200] + [409] * 11
    assert {a.json()["error"]["code"] for a in closes if a.status_code == 409} == {"position_closed"}
    assert answers[-1].status_code == 200 and D(answers[-1].json()["take_profit"]) == D("3500")
    totals, balance = await ledger_totals(api, auth)
    assert totals["realized_pnl"] == D(next(a.json() for a in closes if a.status_code == 200)["realized_pnl"])
    assert len([1 for a in closes if a.status_code == 200]) == 1
    assert balance == D((await api.get("/account", headers=auth)).json()["balance"])


async def test_the_account_comes_from_the_risk_book_and_equals_the_database_s(platform, api, mailbox, email):
    """`GET /account` of a trader holding positions is answered from the dbproc's risk book (no query, whatever
    the positions held), right after each command, and says what the database says."""
    auth = await signed_in(api, mailbox, email)
    user_id = (await api.get("/auth/me", headers=auth)).json()["user"]["id"]
    await set_price(platform, "ETH_USDC", "3000.00", "3000.50")
    queries, engine = platform.dbproc.queries, platform.dbproc.trading
    for step in range(6):
        if step % 3 == 2:
            held = (await api.get("/positions?status=open", headers=auth)).json()
            assert (await api.post(f"/positions/{held[0]['id']}/close", headers=auth, json={})).status_code == 200
        else:
            assert (await api.post("/positions", headers=auth, json=ORDER)).status_code == 201
        before = queries.from_book
        account = (await api.get("/account", headers=auth)).json()  # at once: the book must have caught up
        assert queries.from_book == before + 1
        from_database = await engine.account_of(uuid.UUID(user_id))
        assert {k: D(v) if v is not None else None for k, v in account.items() if k != "currency"} == {
            k: getattr(from_database, k) for k in account if k != "currency"}
