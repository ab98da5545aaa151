"""`cfd prices tail`'s board: what the operator sees for each server frame."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from cfd_cli.prices import PriceBoard

NOW_MS = 1_732_000_000_000


def price(symbol: str, bid: str, ask: str, mid: str, ts: int = NOW_MS) -> dict[str, object]:
    return {"type": "price", "symbol": symbol, "bid": bid, "ask": ask, "mid": mid, "ts": ts}


def render(board: PriceBoard, now_ms: int = NOW_MS) -> str:
    console = Console(width=120, record=True, color_system=None)
    console.print(board.table(now_ms=now_ms))
    return console.export_text()


def cell(board: PriceBoard, symbol: str, column: str, now_ms: int = NOW_MS) -> Text | str:
    table = board.table(now_ms=now_ms)
    names = [c.header for c in table.columns]
    row = (board.symbols or sorted(board.rows)).index(symbol)
    return list(table.columns[names.index(column)].cells)[row]


def test_prices_show_exactly_with_change_since_start_in_colour() -> None:
    board = PriceBoard()
    assert board.apply(price("SOL_USDC", "185.05", "185.10", "185.075"))
    assert board.apply(price("SOL_USDC", "186.05", "186.10", "186.075"))
    assert board.apply(price("BTC_USDC", "96500.0", "96501.0", "96500.50"))
    assert board.apply(price("BTC_USDC", "96400.0", "96401.0", "96400.50"))

    text = render(board)
    assert "186.05" in text and "186.10" in text and "186.075" in text
    up, down = cell(board, "SOL_USDC", "change"), cell(board, "BTC_USDC", "change")
    assert isinstance(up, Text) and up.plain == "+1.000 (+0.54%)" and up.style == "green"
    assert isinstance(down, Text) and down.plain == "-100.00 (-0.10%)" and down.style == "red"
    assert board.updates == 4


def test_age_turns_red_when_the_quote_is_stale() -> None:
    board = PriceBoard(stale_after=10)
    board.apply(price("ETH_USDC", "3450.10", "3450.20", "3450.150"))
    fresh, stale = cell(board, "ETH_USDC", "age", NOW_MS + 400), cell(board, "ETH_USDC", "age", NOW_MS + 12_000)
    assert isinstance(fresh, Text) and fresh.plain == "0.4s" and fresh.style == "dim"
    assert isinstance(stale, Text) and stale.plain == "12.0s" and stale.style == "red"


def test_chosen_symbols_are_listed_before_their_first_price_and_others_ignored() -> None:
    board = PriceBoard(["DOGE_USDC", "SOL_USDC"])
    assert not board.apply(price("BTC_USDC", "1", "2", "1.5"))
    board.apply(price("SOL_USDC", "185.05", "185.10", "185.075"))
    text = render(board)
    assert "DOGE_USDC" in text and "waiting" in text
    assert "BTC_USDC" not in text


def test_other_frames_update_the_status_line_and_bad_prices_are_ignored() -> None:
    board = PriceBoard()
    assert not board.apply({"type": "welcome"})
    assert not board.apply({"type": "subscribed", "channels": ["prices.*"]})
    assert board.status == "live · prices.*"
    assert not board.apply({"type": "error", "code": "bad_channel", "message": "no such channel"})
    assert board.status_style == "red" and "no such channel" in board.status
    assert not board.apply({"type": "price", "symbol": "SOL_USDC", "bid": "x", "ask": "1", "mid": "1"})
    assert not board.apply({"type": "price", "symbol": "SOL_USDC"})
    assert board.rows == {}
