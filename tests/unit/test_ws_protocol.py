"""Parsing client frames and channel names; framing server frames."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from cfd_server.ws.protocol import Channel, ProtocolError, parse_channel, parse_op, text_frame
from shared.contracts.ws import AuthOp, PingOp, SubscribeOp, UnsubscribeOp


def test_each_op_parses():
    assert parse_op('{"op":"subscribe","channels":["prices.SOL_USDC"]}') == SubscribeOp(channels=["prices.SOL_USDC"])
    assert parse_op(b'{"op":"unsubscribe","channels":[]}') == UnsubscribeOp(channels=[])
    assert parse_op('{"op":"auth","token":"abc"}') == AuthOp(token="abc")
    assert parse_op('{"op":"ping","id":1}') == PingOp(id=1)
    assert parse_op('{"op":"ping","id":"a"}') == PingOp(id="a")
    assert parse_op('{"op":"ping"}') == PingOp(id=None)


@pytest.mark.parametrize(("text", "code"), [
    ("", "invalid_json"),
    ("{", "invalid_json"),
    ('"subscribe"', "invalid_frame"),
    ("null", "invalid_frame"),
    ('{"op": 3}', "invalid_frame"),
    ('{"op": "SUBSCRIBE", "channels": []}', "unknown_op"),
    ('{"op": "subscribe"}', "invalid_frame"),
    ('{"op": "subscribe", "channels": [1]}', "invalid_frame"),
    ('{"op": "auth", "token": null}', "invalid_frame"),
    ('{"op": "ping", "id": {"a": 1}}', "invalid_frame"),
    ('{"op": "ping", "id": "' + "x" * 65 + '"}', "invalid_frame"),
    ('{"op": "ping", "nonce": 1}', "invalid_frame"),
])
def test_a_bad_frame_is_a_protocol_error_with_a_code_and_a_message(text, code):
    with pytest.raises(ProtocolError) as info:
        parse_op(text)
    assert info.value.code == code
    assert info.value.message
    assert info.value.frame().startswith(b'{"type":"error","code":"' + code.encode())


def test_channels_parse_and_symbols_are_upper_cased():
    assert parse_channel("prices.SOL_USDC") == Channel("prices.SOL_USDC", "prices", "SOL_USDC")
    assert parse_channel("prices.btc_usdc") == Channel("prices.BTC_USDC", "prices", "BTC_USDC")
    assert parse_channel("prices.*") == Channel("prices.*", "prices", "*")
    assert parse_channel("candles.15m.eth_usdc") == Channel("candles.15m.ETH_USDC", "candles", "ETH_USDC", "15m")
    assert parse_channel("account") == Channel("account", "account")


@pytest.mark.parametrize("name", ["", "prices", "prices.", "prices.XRP_USDC", "prices.SOL_USDC.x", "candles.1m",
                                  "candles.1M.SOL_USDC", "candles.1m.*", "Account", "trades.SOL_USDC"])
def test_unknown_channels_are_refused(name):
    with pytest.raises(ProtocolError) as info:
        parse_channel(name)
    assert info.value.code == "unknown_channel"


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536])
def test_text_frame_is_a_valid_unmasked_websocket_frame(size):
    payload = b"x" * size
    reader = StreamReader()
    reader.feed_data(text_frame(payload))
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
        raise AssertionError("incomplete frame")
    except StopIteration as done:
        frame = done.value
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.data == payload
