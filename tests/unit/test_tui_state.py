"""The client's market and account state: coalesced changes, flashes, staleness, the platform's marks, and bounds."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from cfd_client.models import Account, Position
from cfd_tui import format as fmt
from cfd_tui.state import SPARKLINE_POINTS, MarketBoard, Portfolio
from shared.contracts.events import PositionMark
from shared.contracts.rest import Candle
from shared.contracts.ws import CandleFrame, PriceFrame


def frame(symbol: str, bid: str, ask: str) -> PriceFrame:
    return PriceFrame(symbol=symbol, bid=Decimal(bid), ask=Decimal(ask), mid=(Decimal(bid) + Decimal(ask)) / 2, ts=1)


def test_many_ticks_become_one_change_per_market_with_the_latest_price():
    board = MarketBoard()
    for i in range(50):
        board.apply_price(frame("SOL_USDC", f"{184 + i / 100:.2f}", f"{185 + i / 100:.2f}"), now=0.0)
    board.apply_price(frame("BTC_USDC", "96000", "96010"), now=0.0)
    symbols, _ = board.take_changes()
    assert symbols == {"SOL_USDC", "BTC_USDC"}
    assert board.tickers["SOL_USDC"].bid == Decimal("184.49")
    assert board.take_changes() == (set(), set())


def test_up_and_down_ticks_flash_then_the_flash_ends():
    board = MarketBoard()
    board.apply_price(frame("SOL_USDC", "184.90", "185.10"), now=0.0)
    board.apply_price(frame("SOL_USDC", "185.00", "185.20"), now=1.0)
    ticker = board.tickers["SOL_USDC"]
    assert ticker.direction == 1 and ticker.flash_until > 1.0
    board.take_changes()
    board.expire_flashes(now=5.0)
    assert board.take_changes()[0] == {"SOL_USDC"} and board.tickers["SOL_USDC"].flash_until == 0.0
    board.apply_price(frame("SOL_USDC", "184.00", "184.20"), now=6.0)
    assert board.tickers["SOL_USDC"].direction == -1


def test_a_market_without_ticks_turns_stale_and_recovers():
    board = MarketBoard()
    board.apply_price(frame("ETH_USDC", "3449", "3451"), now=0.0)
    board.mark_stale(now=11.0, after=10.0)
    assert board.stale_symbols() == ["ETH_USDC"]
    board.apply_price(frame("ETH_USDC", "3450", "3452"), now=12.0)
    board.mark_stale(now=12.5, after=10.0)
    assert board.stale_symbols() == []


def test_history_seeds_the_sparkline_and_the_change_reference():
    board = MarketBoard()
    candles = [Candle(t=i, o=Decimal(100 + i), h=Decimal(101 + i), l=Decimal(99 + i), c=Decimal(100 + i), n=1)
               for i in range(5)]
    board.seed("SOL_USDC", candles)
    board.apply_price(frame("SOL_USDC", "109", "111"), now=0.0)
    ticker = board.tickers["SOL_USDC"]
    assert ticker.reference == Decimal(100)
    assert fmt.change_percent(ticker.mid, ticker.reference) == Decimal(10)
    assert list(board.mids["SOL_USDC"])[-1] == Decimal(110)


def test_the_portfolio_shows_the_platforms_marks_and_forgets_those_of_closed_positions():
    portfolio = Portfolio()
    short = Position(id="p", symbol="SOL_USDC", side="short", qty=Decimal(10), entry_price=Decimal(180), leverage=5,
                     margin=Decimal(360), status="open", opened_at=1, updated_at=1)
    portfolio.set_positions([short])
    assert portfolio.pnl(short) is None and portfolio.mark_price(short) is None  # no mark yet: nothing invented
    marked = Account(currency="USD", balance=Decimal(1000), equity=Decimal(949), used_margin=Decimal(360),
                     free_margin=Decimal(589), margin_level=Decimal("263.61"), unrealized_pnl=Decimal(-51))
    portfolio.apply_account(marked, [PositionMark(id="p", price=Decimal("185.10"), unrealized_pnl=Decimal(-51))])
    assert portfolio.pnl(short) == Decimal(-51) and portfolio.mark_price(short) == Decimal("185.10")
    assert portfolio.account is marked
    portfolio.apply_account(None, None)  # a margin-call frame carries neither: the last figures stay
    assert portfolio.account is marked and portfolio.pnl(short) == Decimal(-51)
    portfolio.apply_position(msgspec.structs.replace(short, status="closed"))
    assert portfolio.positions == {} and portfolio.marks == {}


def test_formatting_never_goes_through_float():
    assert fmt.price(Decimal("96500.05"), Decimal("0.1")) == "96,500.0"
    assert fmt.price(Decimal("0.319945"), Decimal("0.00001")) == "0.31994"
    assert fmt.money(Decimal("-0.004")) == "0.00" and fmt.money(Decimal("12.5"), signed=True) == "+12.50"
    assert fmt.sparkline([Decimal(1), Decimal(2), Decimal(3)], 5) == "  ▁▄█"
    assert fmt.sparkline([], 3) == "   "


def test_after_ten_thousand_ticks_the_sparkline_holds_what_it_shows_and_ends_at_the_newest_price():
    board = MarketBoard()
    for i in range(10_000):
        bid = Decimal(10_000 + i) / 100
        board.apply_price(frame("SOL_USDC", str(bid), str(bid + Decimal("0.02"))), now=float(i))
    mids = board.mids["SOL_USDC"]
    assert len(mids) == SPARKLINE_POINTS
    assert mids[-1] == Decimal("200.00") == board.tickers["SOL_USDC"].mid
    assert fmt.sparkline(mids, SPARKLINE_POINTS) == "▁▁▂▂▃▃▄▄▅▅▆▆▇█"  # a steady climb, the newest at the top


def candle_frame(symbol: str, interval: str, t: int, close: str) -> CandleFrame:
    price = Decimal(close)
    return CandleFrame(symbol=symbol, interval=interval, t=t, o=price, h=price, l=price, c=price, n=1, closed=False)


def test_only_the_live_candles_of_the_chart_on_screen_are_kept():
    board = MarketBoard()
    board.follow_candles("SOL_USDC", "1m")
    for t in range(1_000):
        board.apply_candle(candle_frame("SOL_USDC", "1m", t * 60_000, "185"))
    assert board.live_candles == {("SOL_USDC", "1m"): candle_frame("SOL_USDC", "1m", 999 * 60_000, "185")}
    board.follow_candles("BTC_USDC", "5m")
    board.apply_candle(candle_frame("SOL_USDC", "1m", 1_000 * 60_000, "186"))  # in flight before the switch
    board.apply_candle(candle_frame("BTC_USDC", "5m", 0, "96000"))
    assert list(board.live_candles) == [("BTC_USDC", "5m")]
    assert board.take_changes()[1] == {("BTC_USDC", "5m")}
