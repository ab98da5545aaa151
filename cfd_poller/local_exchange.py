"""A local exchange that speaks Backpack's public WebSocket protocol, for tests and offline demos.

Clients send `{"method": "SUBSCRIBE" | "UNSUBSCRIBE", "params": ["bookTicker.SOL_USDC", ...], "id": 1}`;
unknown streams are answered like Backpack does, `{"id": 1, "error": {"code": 4006, "message": "Invalid
stream"}}`, an accepted request with an id gets `{"id": 1, "result": null}`. Quotes are pushed as
`bookTicker` frames to the subscribers of their stream, either scripted (`await exchange.quote(...)`) or
from a random walk (`rate_hz`). Tests can also break things on purpose: drop every connection without a
Close frame, send a Close frame, or send arbitrary raw frames.

On the same port it answers Backpack's REST klines, `GET /api/v1/klines?symbol=&interval=&startTime=&endTime=`
(times in epoch seconds; see `cfd_poller.klines`): the candles of the mids it has quoted since it started,
and before that `history_hours` of simulated 1m candles ending at the market's catalogue price (seeded like
its quotes), at most 1,000 a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from cfd_poller.frames import STREAM_PREFIX, book_ticker_frame, encode_frame
from cfd_poller.history import simulate_minutes
from cfd_poller.klines import KLINES_PATH, MAX_KLINES, from_candle
from cfd_poller.simulation import SIMULATION
from cfd_poller.sources.sim import RandomWalk, seeded_rng
from shared import clock
from shared.candles import MINUTE_MS, add_price, aggregate, bucket_start, open_candle
from shared.contracts.rest import Candle
from shared.markets import MARKETS, SYMBOLS

log = logging.getLogger(__name__)

INVALID_STREAM = 4006
INVALID_REQUEST = 4000

KLINE_INTERVALS = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240, "6h": 360,
                   "8h": 480, "12h": 720, "1d": 1440}
"""Backpack's kline intervals served here, in minutes."""


class LocalExchange:
    """A Backpack-protocol WebSocket server on `host:port` (port 0 picks a free one; see `port` and `url`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, symbols: Iterable[str] = SYMBOLS, *,
                 rate_hz: float | None = None, seed: int | None = None, history_hours: int = 48,
                 max_klines: int = MAX_KLINES) -> None:
        self.host = host
        self.port = port
        self.symbols = tuple(symbols)
        self.rate_hz = rate_hz
        self.seed = seed
        self.history_hours = history_hours
        self.max_klines = max_klines  # klines per answer, like Backpack's limit
        self.subscribe_count = 0  # SUBSCRIBE requests received, valid or not
        self.quotes_sent = 0  # bookTicker frames delivered (one per subscriber)
        self.kline_requests = 0  # klines requests answered (200 or not)
        self.started_minute = 0  # klines before it are simulated, from it on they are the quotes sent
        self._minutes: dict[str, dict[int, Candle]] = {s: {} for s in self.symbols}  # what was quoted, per minute
        self._history: dict[str, list[Candle]] = {}  # simulated, made on the first request
        self._server: Server | None = None
        self._subscriptions: dict[ServerConnection, set[str]] = {}
        self._random_task: asyncio.Task[None] | None = None
        self._update_ids: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self._change = asyncio.Event()  # set and replaced whenever a connection or subscription changes

    # --- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where clients connect, e.g. `ws://127.0.0.1:9000/`."""
        return f"ws://{self.host}:{self.port}/"

    @property
    def rest_url(self) -> str:
        """Where the klines are, e.g. `http://127.0.0.1:9000` (the same address)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; with `rate_hz`, start pushing random quotes to subscribers."""
        now_ms = clock.now_ms()
        self.started_minute = bucket_start(now_ms, MINUTE_MS)
        self._server = await serve(self._handle, self.host, self.port, ping_interval=20, ping_timeout=20,
                                   process_request=self._http)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.rate_hz:
            self._random_task = asyncio.get_running_loop().create_task(self._random_quotes(self.rate_hz))
        log.debug("local exchange listening on %s", self.url)

    async def stop(self) -> None:
        """Stop the random quotes, close every connection and stop listening."""
        if self._random_task is not None:
            self._random_task.cancel()
            await asyncio.gather(self._random_task, return_exceptions=True)
            self._random_task = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> LocalExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Run until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    # --- what tests look at --------------------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._subscriptions)

    def subscribers(self, symbol: str) -> int:
        """How many connections are subscribed to `symbol`'s bookTicker stream."""
        stream = f"{STREAM_PREFIX}{symbol}"
        return sum(stream in streams for streams in self._subscriptions.values())

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `condition()` holds, re-checked whenever a connection or subscription changes; raise
        `TimeoutError` if it does not within `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self._change.wait()

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    async def wait_for_subscribers(self, symbol: str, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least `count` connections are subscribed to `symbol`."""
        await self.wait_until(lambda: self.subscribers(symbol) >= count, timeout)

    # --- pushing frames ------------------------------------------------------------------------------------

    def last_update_id(self, symbol: str) -> int:
        """The update id of the last bookTicker sent for `symbol` (0 before the first)."""
        return self._update_ids.get(symbol, 0)

    async def quote(self, symbol: str, bid: Decimal | str, ask: Decimal | str, *,
                    bid_qty: Decimal | str = "1", ask_qty: Decimal | str = "1",
                    event_time_us: int | None = None) -> int:
        """Send a bookTicker update to `symbol`'s subscribers; returns how many it was sent to."""
        self._update_ids[symbol] = self._update_ids.get(symbol, 0) + 1
        now_us = clock.now_us() if event_time_us is None else event_time_us
        frame = book_ticker_frame(symbol, bid, ask, event_time_us=now_us, bid_qty=bid_qty, ask_qty=ask_qty,
                                  update_id=self._update_ids[symbol])
        self._record(symbol, Decimal(bid), Decimal(ask), now_us // 1000)
        sent = await self._send(encode_frame(frame).decode(), stream=f"{STREAM_PREFIX}{symbol}")
        self.quotes_sent += sent
        return sent

    async def send_raw(self, frame: str | bytes | Mapping[str, Any], *, stream: str | None = None) -> int:
        """Send any frame as is (a dict is JSON-encoded; bytes go as a binary frame) to every connection, or
        only to the subscribers of `stream`; returns how many it was sent to."""
        if isinstance(frame, Mapping):
            frame = encode_frame(frame).decode()
        return await self._send(frame, stream=stream)

    async def _send(self, frame: str | bytes, *, stream: str | None) -> int:
        targets = [ws for ws, streams in list(self._subscriptions.items()) if stream is None or stream in streams]
        sent = 0
        for ws in targets:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)
                sent += 1
        return sent

    # --- breaking things -----------------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Cut every connection at the TCP level, with no Close frame (like a network failure)."""
        connections = list(self._subscriptions)
        for ws in connections:
            ws.transport.abort()
        return len(connections)

    async def close_connections(self, code: int = 1001, reason: str = "going away") -> int:
        """Close every connection cleanly with a Close frame (like a server restart)."""
        connections = list(self._subscriptions)
        await asyncio.gather(*(ws.close(code, reason) for ws in connections), return_exceptions=True)
        return len(connections)

    # --- protocol ------------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self._subscriptions[ws] = set()
        self._changed()
        try:
            async for message in ws:
                await self._on_request(ws, message)
                self._changed()
        except ConnectionClosed:
            pass
        finally:
            self._subscriptions.pop(ws, None)
            self._changed()

    async def _on_request(self, ws: ServerConnection, message: str | bytes) -> None:
        try:
            request = msgspec.json.decode(message)
        except msgspec.DecodeError:
            await self._error(ws, None, INVALID_REQUEST, "Invalid request")
            return
        if not isinstance(request, dict):
            await self._error(ws, None, INVALID_REQUEST, "Invalid request")
            return
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params")
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            await self._error(ws, request_id, INVALID_REQUEST, "Invalid method")
            return
        if method == "SUBSCRIBE":
            self.subscribe_count += 1
        streams = self._subscriptions.get(ws)
        if streams is None:
            return
        accepted = True
        for stream in params:
            if not self._valid_stream(stream):
                accepted = False
                await self._error(ws, request_id, INVALID_STREAM, "Invalid stream")
            elif method == "SUBSCRIBE":
                streams.add(stream)
            else:
                streams.discard(stream)
        if accepted and request_id is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(encode_frame({"id": request_id, "result": None}).decode())

    def _valid_stream(self, stream: object) -> bool:
        return (isinstance(stream, str) and stream.startswith(STREAM_PREFIX)
                and stream[len(STREAM_PREFIX):] in self.symbols)

    async def _error(self, ws: ServerConnection, request_id: object, code: int, message: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode_frame({"id": request_id, "error": {"code": code, "message": message}}).decode())

    # --- klines --------------------------------------------------------------------------------------------

    def klines(self, symbol: str, start_ms: int, end_ms: int, interval: str = "1m",
               limit: int | None = None) -> list[Candle]:
        """The candles this exchange has for buckets starting in `[start_ms, end_ms)`, oldest first (at most
        `limit`, as an answer carries)."""
        minutes = KLINE_INTERVALS[interval]
        history = [c for c in self._simulated(symbol) if c.t < self.started_minute]
        quoted = [c for t, c in sorted(self._minutes.get(symbol, {}).items()) if t >= self.started_minute]
        candles = history + quoted
        if minutes > 1:
            candles = aggregate(candles, minutes * MINUTE_MS)
        return [c for c in candles if start_ms <= c.t < end_ms][:limit]

    def _simulated(self, symbol: str) -> list[Candle]:
        if symbol not in self._history:
            market = MARKETS[symbol]
            rng = random.Random(f"{self.seed}:{symbol}:klines") if self.seed is not None else random.Random()
            start = self.started_minute - self.history_hours * 60 * MINUTE_MS
            self._history[symbol] = simulate_minutes(market, start, self.started_minute, SIMULATION[symbol].price,
                                                     rng, steps=12)
        return self._history[symbol]

    def _record(self, symbol: str, bid: Decimal, ask: Decimal, ts_ms: int) -> None:
        market = MARKETS.get(symbol)
        if market is None:
            return
        mid = ((bid + ask) / 2).quantize(market.price_tick / 10)
        minutes = self._minutes.setdefault(symbol, {})
        t = bucket_start(ts_ms, MINUTE_MS)
        if t in minutes:
            add_price(minutes[t], mid)
        else:
            minutes[t] = open_candle(t, mid)
            # Keep the minutes of the last `history_hours`, as much as the simulated history: an exchange
            # left running for weeks holds a bounded record.
            oldest = t - self.history_hours * 60 * MINUTE_MS
            while minutes and (first := next(iter(minutes))) < oldest:
                del minutes[first]

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """Plain HTTP on the WebSocket port: the klines endpoint; anything else goes on to the handshake."""
        url = urlsplit(request.path)
        if url.path != KLINES_PATH:
            return None
        self.kline_requests += 1
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        symbol, interval = params.get("symbol", ""), params.get("interval", "")
        if symbol not in self.symbols:
            return _json(connection, HTTPStatus.BAD_REQUEST, {"code": "INVALID_MARKET", "message": "Market not found"})
        if interval not in KLINE_INTERVALS:
            return _json(connection, HTTPStatus.BAD_REQUEST,
                         {"code": "INVALID_CLIENT_REQUEST", "message": "Invalid interval"})
        try:
            start = int(params["startTime"]) * 1000
            end = int(params["endTime"]) * 1000 if "endTime" in params else clock.now_ms()
        except (KeyError, ValueError):
            return _json(connection, HTTPStatus.BAD_REQUEST,
                         {"code": "INVALID_CLIENT_REQUEST", "message": "startTime (seconds) is required"})
        length = KLINE_INTERVALS[interval] * MINUTE_MS
        return _json(connection, HTTPStatus.OK,
                     [from_candle(c, length) for c in self.klines(symbol, start, end, interval, self.max_klines)])

    # --- random mode ---------------------------------------------------------------------------------------

    async def _random_quotes(self, rate_hz: float) -> None:
        """Every symbol with a subscriber gets a new random-walk quote `rate_hz` times a second."""
        walks = {s: RandomWalk(MARKETS[s], seeded_rng(self.seed, s), 1.0 / rate_hz)
                 for s in self.symbols if s in MARKETS}
        rng = seeded_rng(self.seed, "quantities")
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            for symbol, walk in walks.items():
                if self.subscribers(symbol):
                    bid, ask = walk.step()
                    await self.quote(symbol, bid, ask, bid_qty=_quantity(rng.random()),
                                     ask_qty=_quantity(rng.random()))
            next_at = max(next_at + 1.0 / rate_hz, loop.time())
            await asyncio.sleep(next_at - loop.time())


def _json(connection: ServerConnection, status: HTTPStatus, body: Any) -> Response:
    response = connection.respond(status, msgspec.json.encode(body).decode())
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


def _quantity(fraction: float) -> str:
    return f"{0.1 + fraction * 50:.2f}"
