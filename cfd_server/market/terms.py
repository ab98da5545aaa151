"""A server's market terms in force: the catalogue's, as operators changed them.

The server never reads the database: it follows `market-settings` (a broadcast of every change the dbproc
applies, and of what each dbproc publishes at start and every minute), and at start asks a dbproc for every
market's settings (`markets.settings`), again every few seconds until one answers. Each market keeps the
newest revision heard of, whichever way it came. Until the first answer the server quotes on the
catalogue's terms; the dbproc, which applies every order, holds the stored ones from its start.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from cfd_server.context import ServerContext
from shared import operations as ops
from shared.bus import Message, Subscription
from shared.contracts.bus import MarketsQuery
from shared.errors import CfdError
from shared.markets import MarketBook, MarketSettings

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0

_decoder = msgspec.json.Decoder(MarketSettings)


class MarketTerms:
    def __init__(self, ctx: ServerContext, book: MarketBook) -> None:
        self.ctx = ctx
        self.book = book
        self.loaded = asyncio.Event()  # set once a dbproc answered with every market's settings
        self._subscription: Subscription | None = None
        self._loading: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._subscription = await self.ctx.bus.subscribe([self.ctx.topics.markets], self.on_message, group=None)
        self._loading = asyncio.get_running_loop().create_task(self._load(), name="market-terms")

    async def stop(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)
            self._loading = None
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None

    async def on_message(self, message: Message) -> None:
        try:
            settings = _decoder.decode(message.value)
        except msgspec.DecodeError:
            log.warning("undecodable market settings at %s@%d", message.topic, message.offset)
            return
        if self.book.apply(settings):
            log.info("%s: revision %d of its settings (%s)", settings.symbol, settings.revision, settings.status)

    async def _load(self) -> None:
        attempts = 0
        while True:
            attempts += 1
            try:
                reply = await self.ctx.rpc.call(ops.MARKET_SETTINGS, MarketsQuery(), key="markets")
            except CfdError as exc:  # no dbproc answers yet (a timeout), or a backend is down
                if attempts == 1:
                    log.info("no dbproc gave the market settings yet (%s); quoting on the catalogue's terms until "
                             "one does", exc.code)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for settings in reply.markets:
                self.book.apply(settings)
            self.loaded.set()
            return
