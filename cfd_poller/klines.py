"""Backpack's REST klines, `GET /api/v1/klines`: the poller's candle backfill, and the format the local exchange
serves.

A request names `symbol`, `interval` (`1m`, `5m`, ...) and `startTime` / `endTime` in epoch **seconds**. The
answer is a JSON array, oldest first, of

    {"start": "2025-07-19 13:09:00", "end": "2025-07-19 13:10:00", "open": "118238", "high": "118297.6",
     "low": "118237.5", "close": "118294.6", "volume": "0.03473", "quoteVolume": "4106.558156", "trades": "12"}

with times in UTC, prices as decimal strings (null for a minute without trades, which is skipped) and at most
`MAX_KLINES` klines per answer. A kline is OHLC of the exchange's trades; the platform's own candles are of the
broker mid, which sits within the spread of those prices.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import msgspec
from msgspec import Struct

from shared.candles import MINUTE_MS
from shared.contracts.rest import Candle
from shared.markets import Market

log = logging.getLogger(__name__)

KLINES_PATH = "/api/v1/klines"
MAX_KLINES = 1000
"""The most klines one answer carries (Backpack's limit); longer spans are fetched in pages."""

_DECIMAL = re.compile(r"\d{1,24}(?:\.\d{1,24})?")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


BACKPACK_API = "https://api.backpack.exchange"


def rest_url(feed_url: str, configured: str | None = None) -> str:
    """Where the klines are: `CFD_BACKPACK_REST_URL` when set; Backpack's API for Backpack's own feed; else the
    feed's host and port over HTTP(S), since a local exchange (or a proxy) serves both on one address."""
    if configured:
        return configured.rstrip("/")
    parts = urlsplit(feed_url)
    if parts.hostname is not None and parts.hostname.endswith("backpack.exchange"):
        return BACKPACK_API
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


class Kline(Struct, kw_only=True):
    """One kline as Backpack sends it (the fields the platform reads, plus the ones it serves)."""

    start: str
    end: str | None = None
    open: str | None = None
    high: str | None = None
    low: str | None = None
    close: str | None = None
    volume: str | None = None
    quoteVolume: str | None = None
    trades: str | int | None = None


_klines_decoder = msgspec.json.Decoder(list[Kline])


class KlineError(Exception):
    """The exchange's klines could not be fetched or read; the message says why."""


def format_time(ms: int) -> str:
    """Epoch milliseconds as Backpack writes kline times (UTC, whole seconds)."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> int:
    """A kline time (`2025-07-19 13:09:00`, UTC; an ISO form with `T` or an offset is accepted) in epoch ms."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def to_candle(kline: Kline, market: Market) -> Candle | None:
    """The 1m candle of a kline, prices at the broker mid's precision; None for a minute without trades.

    Raises `ValueError` for a kline that is not sound (a bad time, price or range)."""
    prices = (kline.open, kline.high, kline.low, kline.close)
    if any(p is None for p in prices):
        return None
    step = market.price_tick / 10
    o, h, low, c = (_price(p, step) for p in prices)  # type: ignore[arg-type]
    if not (0 < low <= min(o, c) and max(o, c) <= h):
        raise ValueError(f"kline range does not hold its open and close: {kline}")
    t = parse_time(kline.start)
    if t % MINUTE_MS:
        raise ValueError(f"kline start {kline.start!r} is not on a minute")
    trades = int(kline.trades) if kline.trades not in (None, "") else 0
    return Candle(t=t, o=o, h=h, l=low, c=c, n=max(0, trades))


def from_candle(candle: Candle, length_ms: int = MINUTE_MS) -> dict[str, str]:
    """A candle as a Backpack kline (what the local exchange answers)."""
    return {"start": format_time(candle.t), "end": format_time(candle.t + length_ms), "open": str(candle.o),
            "high": str(candle.h), "low": str(candle.l), "close": str(candle.c), "volume": "0",
            "quoteVolume": "0", "trades": str(candle.n)}


def _price(text: str, step: Decimal) -> Decimal:
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text):
        raise ValueError(f"kline price {text!r} is not a plain decimal")
    value = Decimal(text)
    if value <= 0:
        raise ValueError(f"kline price {text!r} is not positive")
    return value.quantize(step)


class KlineClient:
    """Fetches 1m candles from a Backpack-protocol REST API (`base_url`, e.g. https://api.backpack.exchange)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, attempts: int = 3, retry_delay: float = 1.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.retry_delay = retry_delay
        self._transport = transport

    async def minutes(self, market: Market, start_ms: int, end_ms: int,
                      progress: Callable[[int], None] | None = None) -> list[Candle]:
        """The 1m candles of `market` whose minute starts in `[start_ms, end_ms)`, oldest first, in pages of at
        most `MAX_KLINES`; `progress` hears how many minutes of the span are behind. Raises `KlineError`."""
        found: dict[int, Candle] = {}
        cursor = start_ms
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, transport=self._transport,
                                     headers={"User-Agent": "cfd-broker"}) as client:
            while cursor < end_ms:
                page_end = min(end_ms, cursor + MAX_KLINES * MINUTE_MS)
                klines = await self._page(client, market.symbol, cursor, page_end)
                last: int | None = None
                for kline in klines:
                    try:
                        candle = to_candle(kline, market)
                    except ValueError as exc:
                        log.warning("skipping a kline of %s: %s", market.symbol, exc)
                        continue
                    if candle is not None and cursor <= candle.t < page_end:
                        found[candle.t] = candle
                        last = candle.t if last is None else max(last, candle.t)
                # an answer that stopped short (a smaller limit than ours, or quiet minutes at the end) is
                # asked again after its last kline; an empty answer ends the page
                short = len(klines) < (page_end - cursor) // MINUTE_MS
                cursor = last + MINUTE_MS if last is not None and short and last + MINUTE_MS < page_end \
                    else page_end
                if progress is not None:
                    progress((cursor - start_ms) // MINUTE_MS)
        return [found[t] for t in sorted(found)]

    async def _page(self, client: httpx.AsyncClient, symbol: str, start_ms: int, end_ms: int) -> list[Kline]:
        params: dict[str, str | int] = {"symbol": symbol, "interval": "1m", "startTime": start_ms // 1000,
                                        "endTime": end_ms // 1000}
        delay = self.retry_delay
        for attempt in range(1, self.attempts + 1):
            try:
                response = await client.get(KLINES_PATH, params=params)
                if response.status_code == 200:
                    return _klines_decoder.decode(response.content)
                problem = f"{self.base_url}{KLINES_PATH} answered {response.status_code}: {response.text[:200]}"
                retry = response.status_code == 429 or response.status_code >= 500
            except msgspec.DecodeError as exc:
                problem, retry = f"{self.base_url}{KLINES_PATH} sent klines that cannot be read: {exc}", False
            except httpx.HTTPError as exc:
                problem, retry = f"cannot reach {self.base_url}: {type(exc).__name__} {exc}".rstrip(), True
            if not retry or attempt == self.attempts:
                raise KlineError(problem)
            log.info("klines of %s: %s; trying again in %.0f s", symbol, problem, delay)
            await asyncio.sleep(delay)
            delay *= 2
        raise KlineError("unreachable")  # pragma: no cover - the loop returns or raises
