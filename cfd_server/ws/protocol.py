"""The WebSocket feed's protocol: client operations, channel names, error codes, close codes, framing.

See `docs/websocket.md` for the protocol as clients see it.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec
from websockets.frames import Frame, Opcode

from cfd_server.body import JsonError, read_json
from shared.candles import INTERVALS
from shared.contracts import encode
from shared.contracts.ws import AuthOp, ErrorFrame, PingOp, SubscribeOp, UnsubscribeOp, WsOp
from shared.markets import MARKETS

PATH = "/ws"

# Close codes the server sends itself (RFC 6455 §7.4; 4000-4999 are for applications). The websockets library
# sends the others: 1001 when the server shuts down, 1009 for a frame over the size limit.
CLOSE_POLICY = 1008  # too many bad frames
CLOSE_TOO_SLOW = 4008  # the client stopped reading and its outbox stayed full
CLOSE_TRY_AGAIN = 1013  # the missed account events cannot be read now: reconnect and resume

ALL_PRICES = "prices.*"
ACCOUNT = "account"


class ProtocolError(Exception):
    """A client frame the server cannot act on; it becomes an `error` frame and the connection stays."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def frame(self) -> bytes:
        return encode(ErrorFrame(code=self.code, message=self.message))


class Channel(NamedTuple):
    """A parsed channel name: `kind` is prices, candles or account; `symbol` "*" means every market."""

    name: str
    kind: str
    symbol: str | None = None
    interval: str | None = None


_OPS: dict[str, type] = {"subscribe": SubscribeOp, "unsubscribe": UnsubscribeOp, "auth": AuthOp, "ping": PingOp}


def parse_op(data: str | bytes) -> WsOp:
    """Decode one client frame into an operation, or raise `ProtocolError` saying what is wrong.

    Frames are read like request bodies (`cfd_server.body.read_json`): UTF-8, nested at most 32 deep, each
    key once."""
    try:
        obj = read_json(data, "frame")
    except JsonError as exc:
        raise ProtocolError("invalid_frame" if exc.code == "duplicate_key" else "invalid_json", exc.message) from None
    if not isinstance(obj, dict):
        raise ProtocolError("invalid_frame", 'A frame must be a JSON object with an "op" field.')
    op = obj.get("op")
    if not isinstance(op, str):
        raise ProtocolError("invalid_frame", 'A frame needs an "op": subscribe, unsubscribe, auth or ping.')
    kind = _OPS.get(op)
    if kind is None:
        raise ProtocolError("unknown_op", f"Unknown op {op[:40]!r}; use subscribe, unsubscribe, auth or ping.")
    try:
        return msgspec.convert(obj, kind)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid_frame", f"Bad {op} frame: {exc}.") from None


def parse_channel(name: str) -> Channel:
    """`prices.<SYMBOL>`, `prices.*`, `candles.<interval>.<SYMBOL>` or `account`; symbols are upper-cased."""
    if name == ACCOUNT:
        return Channel(ACCOUNT, ACCOUNT)
    parts = name.split(".")
    if len(parts) == 2 and parts[0] == "prices":
        if parts[1] == "*":
            return Channel(ALL_PRICES, "prices", "*")
        symbol = parts[1].upper()
        if symbol in MARKETS:
            return Channel(f"prices.{symbol}", "prices", symbol)
        raise ProtocolError("unknown_channel", f"No market {parts[1][:40]!r}; markets: {', '.join(MARKETS)}.")
    if len(parts) == 3 and parts[0] == "candles":
        interval, symbol = parts[1], parts[2].upper()
        if interval not in INTERVALS:
            raise ProtocolError("unknown_channel",
                                f"No interval {interval[:10]!r}; intervals: {', '.join(INTERVALS)}.")
        if symbol in MARKETS:
            return Channel(f"candles.{interval}.{symbol}", "candles", symbol, interval)
        raise ProtocolError("unknown_channel", f"No market {parts[2][:40]!r}; markets: {', '.join(MARKETS)}.")
    raise ProtocolError("unknown_channel", f"Unknown channel {name[:60]!r}; use prices.<SYMBOL>, prices.*, "
                        "candles.<interval>.<SYMBOL> or account.")


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked WebSocket text frame: built once, written as is to every client.

    Server frames are never masked and the server runs without compression, so the bytes on the wire are
    the same for every connection; building them once per tick is what keeps the fan-out cheap.
    """
    return Frame(Opcode.TEXT, payload).serialize(mask=False)
