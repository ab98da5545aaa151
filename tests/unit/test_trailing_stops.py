"""Trailing stop-losses in the risk book: they ratchet with the close price, never move back, and fire as
`trailing_stop` at the level they reached."""

from __future__ import annotations

from decimal import Decimal

from cfd_dbproc.risk.book import OpenPosition, RiskBook
from shared.contracts.quote import Quote

D = Decimal


def tick(bid: str, ask: str) -> Quote:
    return Quote(symbol="SOL_USDC", bid=D(bid), ask=D(ask), mid=(D(bid) + D(ask)) / 2, ts=0)


def book_with(side: str, stop_loss: str, distance: str = "5") -> RiskBook:
    book = RiskBook()
    book.on_quote(tick("100", "101"))
    book.add_accounts([OpenPosition(id="p", user_id="ada", symbol="SOL_USDC", side=side, qty=D(1),  # type: ignore[arg-type]
                                    entry_price=D(100), margin=D(10), stop_loss=D(stop_loss),
                                    trailing_distance=D(distance))], {"ada": D(10_000)})
    return book


def test_a_longs_stop_follows_the_bid_up_and_not_down_then_fires_as_a_trailing_stop():
    book = book_with("long", "95")
    assert book.on_quote(tick("104", "105")) == [] and book.stop_loss_of("p") == D(99)
    assert book.take_trailed() == {"p": ("ada", D(99))} and book.take_trailed() == {}
    book.on_quote(tick("101", "102"))  # the bid falls back: the stop stays
    assert book.stop_loss_of("p") == D(99) and book.take_trailed() == {}
    book.on_quote(tick("110", "111"))
    assert book.stop_loss_of("p") == D(105)
    (trigger,) = book.on_quote(tick("104.5", "105.5"))
    assert (trigger.kind, trigger.price, trigger.stop_loss) == ("trailing_stop", D("104.5"), D(105))


def test_a_shorts_stop_follows_the_ask_down():
    book = book_with("short", "106")
    book.on_quote(tick("94", "95"))  # ask 95: the stop comes down to 100
    assert book.stop_loss_of("p") == D(100)
    book.on_quote(tick("97", "98"))
    assert book.stop_loss_of("p") == D(100)
    (trigger,) = book.on_quote(tick("99", "100"))
    assert trigger.kind == "trailing_stop" and trigger.stop_loss == D(100)


def test_a_stored_level_behind_the_books_does_not_pull_the_stop_back():
    book = book_with("long", "95")
    book.on_quote(tick("120", "121"))
    assert book.stop_loss_of("p") == D(115)
    # an update event carrying an older stored level would reset it; the runner keeps the further one, and the
    # book takes what it is given: here the same level again
    book.position_updated(OpenPosition(id="p", user_id="ada", symbol="SOL_USDC", side="long", qty=D(1),
                                       entry_price=D(100), margin=D(10), stop_loss=D(115), trailing_distance=D(5)))
    assert book.on_quote(tick("114", "115"))[0].kind == "trailing_stop"


def test_a_ratcheted_level_is_unstored_until_an_update_carries_it_or_the_trailing_stops():
    """What a command on the position starts from (`unstored_stop`): the ratcheted level, while it waits to be
    stored and while its store is on the way; not once an update shows it stored, or the position stops
    trailing, or closes."""
    book = book_with("long", "95")
    assert book.unstored_stop("p") is None
    book.on_quote(tick("104", "105"))
    assert book.unstored_stop("p") == D(99)
    book.take_trailed()
    assert book.unstored_stop("p") == D(99)  # sent to be stored, not stored yet

    def updated(stop_loss: str, distance: str | None = "5") -> None:
        book.position_updated(OpenPosition(id="p", user_id="ada", symbol="SOL_USDC", side="long", qty=D(1),
                                           entry_price=D(100), margin=D(10), stop_loss=D(stop_loss),
                                           trailing_distance=None if distance is None else D(distance)))

    updated("95")  # an update with the old stored level (a take-profit changed, say): still not stored
    assert book.unstored_stop("p") == D(99)
    updated("99")  # stored
    assert book.unstored_stop("p") is None
    book.on_quote(tick("110", "111"))
    book.take_trailed()
    updated("99", distance=None)  # the trailing stopped
    assert book.unstored_stop("p") is None
    book.on_quote(tick("120", "121"))
    updated("99")
    book.on_quote(tick("125", "126"))
    assert book.unstored_stop("p") == D(120)
    book.position_closed("p")
    assert book.unstored_stop("p") is None
