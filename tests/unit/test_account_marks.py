"""Marks for the accounts someone watches: made by the dbproc that holds the account, only when they change,
and only while the watch lasts."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from cfd_dbproc.risk.book import OpenPosition, RiskBook
from cfd_dbproc.trading.marks import MAX_LEASE, MarkPublisher
from shared.contracts.bus import WatchAccount
from shared.contracts.quote import Quote

D = Decimal


class Owner:
    """The part of the risk runner the marks read: its book, and which accounts it owns."""

    def __init__(self, book: RiskBook, owned: set[str]) -> None:
        self.book = book
        self.owned = owned

    def owns(self, user_id: str) -> bool:
        return user_id in self.owned


def quote(bid: str, ask: str) -> Quote:
    return Quote(symbol="SOL_USDC", bid=D(bid), ask=D(ask), mid=(D(bid) + D(ask)) / 2, ts=1)


def setup() -> tuple[MarkPublisher, list[float]]:
    book = RiskBook()
    book.add_accounts([OpenPosition(id="p1", user_id="ada", symbol="SOL_USDC", side="long", qty=D(10),
                                    entry_price=D(100), margin=D(200)),
                       OpenPosition(id="p2", user_id="bob", symbol="SOL_USDC", side="long", qty=D(1),
                                    entry_price=D(100), margin=D(20))],
                      {"ada": D(1000), "bob": D(500)})
    book.on_quote(quote("110", "111"))
    now = [0.0]
    publisher = MarkPublisher(bus=None, marks_topic="marks", risk=Owner(book, {"ada"}),  # type: ignore[arg-type]
                              clock=lambda: now[0])
    return publisher, now


async def test_a_watched_account_is_marked_once_per_change_until_the_watch_lapses():
    publisher, now = setup()
    assert publisher.frames() == []  # nobody watches: nothing is marked
    await publisher.watch(WatchAccount(user_id="ada", seconds=15))
    (user_id, frame), = publisher.frames()
    mark = msgspec.json.decode(frame)
    assert user_id == "ada" and mark["event"] == "mark"
    # A long closes at the bid. Equity 1,100 and 200 of margin: the account is at 50 % once the bid has fallen
    # by (1,100 − 100) / 10 to 10, at 100 % once it has fallen by (1,100 − 200) / 10 to 20.
    assert mark["marks"] == [{"id": "p1", "price": "110", "unrealized_pnl": "100.00", "stop_out_price": "10",
                              "margin_call_price": "20"}]
    assert mark["account"]["equity"] == "1100.00" and mark["account"]["margin_level"] == "550.00"
    assert publisher.frames() == []  # nothing moved: nothing sent again

    publisher.risk.book.on_quote(quote("105", "106"))
    (_, frame), = publisher.frames()
    assert msgspec.json.decode(frame)["account"]["unrealized_pnl"] == "50.00"

    now[0] = 16.0  # the watch was not renewed
    publisher.risk.book.on_quote(quote("120", "121"))
    assert publisher.frames() == []


async def test_only_the_owner_marks_and_a_watch_cannot_ask_for_ever():
    publisher, now = setup()
    await publisher.watch(WatchAccount(user_id="bob", seconds=15))  # another dbproc's account
    assert publisher.frames() == []
    await publisher.watch(WatchAccount(user_id="ada", seconds=1e12))
    assert [u for u, _ in publisher.frames()] == ["ada"]
    now[0] = MAX_LEASE + 1
    publisher.risk.book.on_quote(quote("120", "121"))
    assert publisher.frames() == []
