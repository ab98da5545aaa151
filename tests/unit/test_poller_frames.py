"""Backpack frame validation: what the poller accepts, what it skips, and how it counts what it skips."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from cfd_poller.frames import (
    Ack,
    BookTicker,
    ErrorFrame,
    FrameDecoder,
    InvalidFrame,
    book_ticker_frame,
    encode_frame,
    subscribe_message,
    tick_frame,
)
from cfd_poller.metrics import PollerMetrics
from shared.contracts import encode
from shared.contracts.bus import PriceTick

E_US = 1_732_000_000_123_456
T_US = 1_732_000_000_120_000


def frame(stream: str = "bookTicker.SOL_USDC", **data: Any) -> bytes:
    body: dict[str, Any] = {"e": "bookTicker", "E": E_US, "T": T_US, "s": "SOL_USDC", "a": "185.10", "A": "12.3",
                            "b": "185.05", "B": "8.1", "u": 123}
    body.update(data)
    return msgspec.json.encode({"stream": stream, "data": {k: v for k, v in body.items() if v is not ...}})


decoder = FrameDecoder()


def test_a_good_frame_gives_exact_decimals_and_times() -> None:
    update = decoder.decode(frame())
    assert isinstance(update, BookTicker)
    assert update.symbol == "SOL_USDC"
    assert (update.bid, update.ask) == (Decimal("185.05"), Decimal("185.10"))
    assert str(update.ask) == "185.10"  # the exchange's digits, not a float's
    assert (update.bid_qty, update.ask_qty) == (Decimal("8.1"), Decimal("12.3"))
    assert (update.event_time_us, update.engine_time_us, update.update_id) == (E_US, T_US, 123)

    tick = update.to_tick(ingest_time_us=E_US + 500)
    assert tick == PriceTick(symbol="SOL_USDC", bid=Decimal("185.05"), ask=Decimal("185.10"),
                             exchange_time_us=T_US, ingest_time_us=E_US + 500, update_id=123)
    assert b'"185.10"' in encode(tick)


@pytest.mark.parametrize("as_string", [False, True])
def test_times_may_be_numbers_or_strings(as_string: bool) -> None:
    update = decoder.decode(frame(E=str(E_US) if as_string else E_US, T=str(T_US) if as_string else T_US,
                                  u="123" if as_string else 123))
    assert isinstance(update, BookTicker)
    assert (update.event_time_us, update.engine_time_us, update.update_id) == (E_US, T_US, 123)


def test_quantities_and_engine_time_are_optional() -> None:
    update = decoder.decode(frame(A=..., B=..., T=..., u=...))
    assert isinstance(update, BookTicker)
    assert update.exchange_time_us == E_US  # falls back to the event time
    assert update.bid_qty is None


BAD_FRAMES = [
    pytest.param(b"not json at all", "malformed", id="garbage"),
    pytest.param(b"[1, 2, 3]", "malformed", id="array"),
    pytest.param(b"{}", "malformed", id="empty-object"),
    pytest.param(b'{"stream": "bookTicker.SOL_USDC", "data": "x"}', "wrong_type", id="data-not-object"),
    pytest.param(frame(b=185.05), "wrong_type", id="price-as-number"),
    pytest.param(frame(E=1.5e15), "wrong_type", id="time-as-float"),
    pytest.param(frame(E=True), "wrong_type", id="time-as-bool"),
    pytest.param(frame(a=...), "missing_field", id="no-ask"),
    pytest.param(frame(b="-185.05"), "bad_price", id="negative-price"),
    pytest.param(frame(b="0"), "bad_price", id="zero-price"),
    pytest.param(frame(a="NaN"), "bad_price", id="nan"),
    pytest.param(frame(a="Infinity"), "bad_price", id="infinity"),
    pytest.param(frame(a="1e3"), "bad_price", id="exponent"),
    pytest.param(frame(a=""), "bad_price", id="empty-price"),
    pytest.param(frame(A="-1"), "bad_quantity", id="negative-quantity"),
    pytest.param(frame(b="185.20", a="185.10"), "crossed", id="bid-above-ask"),
    pytest.param(frame("bookTicker.PEPE_USDC", s="PEPE_USDC"), "unknown_symbol", id="unknown-symbol"),
    pytest.param(frame("bookTicker.BTC_USDC"), "stream_mismatch", id="stream-symbol-mismatch"),
    pytest.param(frame("depth.SOL_USDC"), "unexpected_stream", id="other-stream"),
    pytest.param(frame(e="trade"), "unexpected_event", id="other-event"),
    pytest.param(frame(E="soon"), "bad_time", id="time-not-digits"),
    pytest.param(frame(E=-5), "bad_time", id="negative-time"),
    pytest.param(frame(T=0), "bad_time", id="zero-time"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_FRAMES)
def test_each_bad_frame_is_rejected_with_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidFrame) as caught:
        decoder.decode(raw)
    assert caught.value.reason == reason


def test_bad_frames_are_counted_per_reason_and_skipped() -> None:
    metrics = PollerMetrics()
    raws = [raw for raw, _ in (p.values for p in BAD_FRAMES)]
    updates = [decoder.update(raw, metrics) for raw in [*raws, frame()]]
    assert updates[:-1] == [None] * len(raws)
    assert isinstance(updates[-1], BookTicker)
    assert metrics.invalid_frames == Counter(reason for _, reason in (p.values for p in BAD_FRAMES))
    assert metrics.invalid_total == len(raws)


def test_error_and_ack_answers_are_not_updates_and_not_invalid(caplog: pytest.LogCaptureFixture) -> None:
    error = b'{"id":null,"error":{"code":4006,"message":"Invalid stream"}}'
    assert decoder.decode(error) == ErrorFrame(id=None, code=4006, message="Invalid stream")
    assert decoder.decode(b'{"id":7,"result":null}') == Ack(id=7)

    metrics = PollerMetrics()
    assert decoder.update(error, metrics, source="backpack") is None
    assert decoder.update(b'{"id":7,"result":null}', metrics) is None
    assert metrics.error_frames == 1
    assert metrics.invalid_total == 0
    assert "backpack answered with error 4006: Invalid stream" in caplog.text


def test_a_decoder_knows_only_its_markets() -> None:
    with pytest.raises(InvalidFrame, match="unknown_symbol"):
        FrameDecoder(["BTC_USDC"]).decode(frame())


def test_encoded_frames_decode_back_to_the_same_prices() -> None:
    raw = encode_frame(book_ticker_frame("DOGE_USDC", Decimal("0.31990"), Decimal("0.32010"), event_time_us=E_US,
                                         bid_qty="100", ask_qty="250", update_id=9))
    update = decoder.decode(raw)
    assert isinstance(update, BookTicker)
    assert (str(update.bid), str(update.ask), update.update_id) == ("0.31990", "0.32010", 9)

    tick = PriceTick(symbol="BTC_USDC", bid=Decimal("96500.1"), ask=Decimal("96500.6"), exchange_time_us=E_US,
                     ingest_time_us=E_US + 10)
    again = decoder.decode(tick_frame(tick, update_id=1))
    assert isinstance(again, BookTicker)
    assert again.to_tick(E_US + 10) == msgspec.structs.replace(tick, update_id=1)


def test_subscribe_message_names_every_stream() -> None:
    message = msgspec.json.decode(subscribe_message(["SOL_USDC", "BTC_USDC"], 3))
    assert message == {"method": "SUBSCRIBE", "params": ["bookTicker.SOL_USDC", "bookTicker.BTC_USDC"], "id": 3}
