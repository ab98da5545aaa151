"""Backpack WebSocket frames: decoding, validation and encoding of `bookTicker` updates.

A data frame is `{"stream": "bookTicker.SOL_USDC", "data": {"e": "bookTicker", "E": ..., "T": ..., "s": ...,
"a": "185.10", "A": "12.3", "b": "185.05", "B": "8.1", "u": 123}}`: prices and quantities are decimal
strings, `E` (event time) and `T` (engine time) are epoch microseconds sent as numbers or strings.
Anything that is not a well-formed update for a known market raises `InvalidFrame` with a short `reason`
(the poller counts frames per reason); the exchange's own error answers decode to `ErrorFrame`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import msgspec
from msgspec import Raw, Struct

from cfd_poller.metrics import PollerMetrics
from shared.contracts.bus import PriceTick
from shared.markets import SYMBOLS

log = logging.getLogger(__name__)

STREAM_PREFIX = "bookTicker."

_DECIMAL = re.compile(r"\d{1,24}(?:\.\d{1,24})?")
_DIGITS = re.compile(r"\d{1,20}")


class InvalidFrame(Exception):
    """A frame that is not a valid update; `reason` is a stable snake_case word for counting."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BookTicker(Struct, frozen=True, kw_only=True):
    """A validated top-of-book update (times in epoch microseconds)."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_qty: Decimal | None = None
    ask_qty: Decimal | None = None
    event_time_us: int
    engine_time_us: int | None = None
    update_id: int | None = None

    @property
    def exchange_time_us(self) -> int:
        """When the book changed on the exchange: the engine time when sent, else the event time."""
        return self.engine_time_us if self.engine_time_us is not None else self.event_time_us

    def to_tick(self, ingest_time_us: int, *, exchange_time_us: int | None = None) -> PriceTick:
        """The `PriceTick` the poller publishes for this update."""
        return PriceTick(
            symbol=self.symbol,
            bid=self.bid,
            ask=self.ask,
            exchange_time_us=self.exchange_time_us if exchange_time_us is None else exchange_time_us,
            ingest_time_us=ingest_time_us,
            update_id=self.update_id,
        )


class ErrorFrame(Struct, frozen=True, kw_only=True):
    """The exchange's answer to a request it rejected, e.g. code 4006 "Invalid stream"."""

    id: int | str | None = None
    code: int | None = None
    message: str = ""


class Ack(Struct, frozen=True, kw_only=True):
    """The exchange's answer to a request it accepted."""

    id: int | str | None = None


Frame = BookTicker | ErrorFrame | Ack


# --- wire shapes -----------------------------------------------------------------------------------------


class _ErrorBody(Struct):
    code: int | None = None
    message: str = ""


_ABSENT = Raw(b"")


class _Envelope(Struct):
    stream: str | None = None
    data: Raw = _ABSENT  # decoded separately, once the stream says what it is
    id: int | str | None = None
    error: _ErrorBody | None = None
    result: Raw = _ABSENT


class _BookTickerData(Struct):
    e: str
    E: int | str
    s: str
    a: str
    b: str
    T: int | str | None = None
    A: str | None = None
    B: str | None = None
    u: int | str | None = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_data_decoder = msgspec.json.Decoder(_BookTickerData)
_encoder = msgspec.json.Encoder()


class FrameDecoder:
    """Decodes frames for a fixed set of markets (all of `shared.markets` by default)."""

    def __init__(self, symbols: Iterable[str] = SYMBOLS) -> None:
        self.symbols = frozenset(symbols)

    def decode(self, raw: bytes | str) -> Frame:
        """One frame as received; raises `InvalidFrame` for anything that is not a valid answer or update."""
        try:
            envelope = _envelope_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise InvalidFrame("malformed", str(exc)) from None
        if envelope.error is not None:
            return ErrorFrame(id=envelope.id, code=envelope.error.code, message=envelope.error.message)
        if envelope.stream is None or not envelope.data:
            if envelope.id is not None or envelope.result:
                return Ack(id=envelope.id)
            raise InvalidFrame("malformed", "neither a stream update nor an answer")
        return self._book_ticker(envelope.stream, envelope.data)

    def update(self, raw: bytes | str, metrics: PollerMetrics, *, source: str = "the feed") -> BookTicker | None:
        """The update in `raw`, or None: invalid frames are counted per reason and skipped, the exchange's
        error answers are counted and logged, acknowledgements are ignored."""
        try:
            frame = self.decode(raw)
        except InvalidFrame as exc:
            metrics.invalid(exc.reason)
            log.debug("frame from %s skipped: %s", source, exc)
            return None
        if isinstance(frame, BookTicker):
            return frame
        if isinstance(frame, ErrorFrame):
            metrics.error_frames += 1
            log.warning("%s answered with error %s: %s", source, frame.code, frame.message or "(no message)")
        return None

    def _book_ticker(self, stream: str, raw_data: Raw) -> BookTicker:
        if not stream.startswith(STREAM_PREFIX):
            raise InvalidFrame("unexpected_stream", stream)
        try:
            data = _data_decoder.decode(raw_data)
        except msgspec.ValidationError as exc:
            reason = "missing_field" if str(exc).startswith("Object missing required field") else "wrong_type"
            raise InvalidFrame(reason, str(exc)) from None
        except msgspec.DecodeError as exc:
            raise InvalidFrame("malformed", str(exc)) from None
        if data.e != "bookTicker":
            raise InvalidFrame("unexpected_event", data.e)
        if data.s not in self.symbols:
            raise InvalidFrame("unknown_symbol", data.s)
        if stream[len(STREAM_PREFIX):] != data.s:
            raise InvalidFrame("stream_mismatch", f"{stream} carries {data.s}")
        bid = _price(data.b, "bid")
        ask = _price(data.a, "ask")
        if bid > ask:
            raise InvalidFrame("crossed", f"bid {bid} > ask {ask}")
        return BookTicker(
            symbol=data.s,
            bid=bid,
            ask=ask,
            bid_qty=None if data.B is None else _quantity(data.B, "bid quantity"),
            ask_qty=None if data.A is None else _quantity(data.A, "ask quantity"),
            event_time_us=_time(data.E, "E"),
            engine_time_us=None if data.T is None else _time(data.T, "T"),
            update_id=None if data.u is None else _whole(data.u, "u", "bad_update_id"),
        )


def _positive(text: str, what: str, reason: str) -> Decimal:
    if not _DECIMAL.fullmatch(text):
        raise InvalidFrame(reason, f"{what} {text!r} is not a plain positive decimal")
    value = Decimal(text)
    if value <= 0:
        raise InvalidFrame(reason, f"{what} {text!r} is not positive")
    return value


def _price(text: str, what: str) -> Decimal:
    return _positive(text, what, "bad_price")


def _quantity(text: str, what: str) -> Decimal:
    return _positive(text, what, "bad_quantity")


def _whole(value: int | str, what: str, reason: str) -> int:
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise InvalidFrame(reason, f"{what} {value!r} is not a whole number")
        value = int(value)
    if value < 0:
        raise InvalidFrame(reason, f"{what} {value} is negative")
    return value


def _time(value: int | str, what: str) -> int:
    micros = _whole(value, what, "bad_time")
    if micros == 0:
        raise InvalidFrame("bad_time", f"{what} is zero")
    return micros


# --- encoding (the local exchange and recordings) --------------------------------------------------------


def book_ticker_frame(
    symbol: str,
    bid: Decimal | str,
    ask: Decimal | str,
    *,
    event_time_us: int,
    engine_time_us: int | None = None,
    bid_qty: Decimal | str | None = None,
    ask_qty: Decimal | str | None = None,
    update_id: int | None = None,
) -> dict[str, Any]:
    """A Backpack `bookTicker` frame as a dict (decimal strings, integer microseconds)."""
    data: dict[str, Any] = {"e": "bookTicker", "E": event_time_us, "s": symbol, "a": str(ask)}
    if ask_qty is not None:
        data["A"] = str(ask_qty)
    data["b"] = str(bid)
    if bid_qty is not None:
        data["B"] = str(bid_qty)
    data["T"] = event_time_us if engine_time_us is None else engine_time_us
    if update_id is not None:
        data["u"] = update_id
    return {"stream": f"{STREAM_PREFIX}{symbol}", "data": data}


def tick_frame(tick: PriceTick, update_id: int | None = None) -> bytes:
    """A `PriceTick` as one Backpack frame (JSON bytes, no newline); quantities are not known, so omitted."""
    return encode_frame(book_ticker_frame(tick.symbol, tick.bid, tick.ask, event_time_us=tick.exchange_time_us,
                                          update_id=update_id))


def encode_frame(frame: Any) -> bytes:
    """JSON-encode a frame."""
    return _encoder.encode(frame)


def subscribe_message(symbols: Iterable[str], request_id: int | None = None, *, method: str = "SUBSCRIBE") -> bytes:
    """The request that subscribes (or, with `method="UNSUBSCRIBE"`, unsubscribes) `bookTicker` streams."""
    message: dict[str, Any] = {"method": method, "params": [f"{STREAM_PREFIX}{s}" for s in symbols]}
    if request_id is not None:
        message["id"] = request_id
    return encode_frame(message)
