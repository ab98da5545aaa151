"""Market controls in the dbproc: the terms operators change (status, spread, commission, financing, maximum
leverage), stored, audited and published.

- At start the dbproc loads the stored settings into its `MarketBook` (the terms its quotes, orders, stops and
  costs use), follows `market-settings` (a broadcast: a change another dbproc applied), and publishes what it
  loaded, so a server that started first, or missed a change, has it too. It publishes again every
  `REPUBLISH_SECONDS`.
- `operator.set_market` is a command applied once: in one transaction it reads the market's settings (locking
  the row on PostgreSQL), writes the new ones with the next revision and an audit row (who, from where,
  when, before, after). After the commit the dbproc takes them itself and publishes them; every server and
  dbproc takes them when they arrive. A change that changes nothing writes nothing.
- `markets.settings` answers a starting server; `operator.audit` lists the audit, newest first.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
from piccolo.custom_types import Combinable
from piccolo.query import WhereRaw

from cfd_dbproc.commands import apply_once
from cfd_dbproc.db import Database
from cfd_dbproc.db.tables import MarketSettingsRows, OperatorAudit
from shared import operations as ops
from shared.bus import Bus, Message, Subscription, Topics
from shared.bus.rpc import handles
from shared.clock import now_ms
from shared.contracts import encode
from shared.contracts.bus import AuditQuery, MarketsQuery, MarketsSettings, SetMarketCommand
from shared.contracts.rest import AuditEntry
from shared.errors import BackendDown, BadRequest
from shared.ids import Ids
from shared.markets import (
    SETTING_FIELDS,
    MarketBook,
    MarketSettings,
    check_settings,
    market_of,
    settings_of,
)
from shared.outage import Outage
from shared.paging import MAX_PAGE, decode_cursor
from shared.trading import plain

log = logging.getLogger(__name__)

REPUBLISH_SECONDS = 60.0
"""How often each dbproc publishes the stored settings again: an instance that missed a change (the bus was
down when it was published) has it within this long."""

_settings_decoder = msgspec.json.Decoder(MarketSettings)


def settings_from_row(row: dict[str, Any]) -> MarketSettings:
    return MarketSettings(symbol=row["symbol"], status=row["status"], spread_bps=plain(row["spread_bps"]),
                          commission_rate=plain(row["commission_rate"]),
                          financing_long_rate=plain(row["financing_long_rate"]),
                          financing_short_rate=plain(row["financing_short_rate"]),
                          max_leverage=row["max_leverage"], revision=row["revision"], updated_at=row["updated_at"])


def _terms(settings: MarketSettings) -> dict[str, Any]:
    """The settings an audit row shows (as JSON: decimals as strings)."""
    return {name: msgspec.to_builtins(getattr(settings, name)) for name in SETTING_FIELDS}


class MarketKeeper:
    def __init__(self, db: Database, bus: Bus, topics: Topics, book: MarketBook,
                 clock: Callable[[], int] = now_ms, ids: Ids | None = None) -> None:
        self.db = db
        self.bus = bus
        self.topics = topics
        self.book = book
        self.clock = clock
        self.ids = ids or Ids()
        self._subscription: Subscription | None = None
        self._republishing: asyncio.Task[None] | None = None
        self.publish_failed = Outage("market settings cannot be published (other instances keep the terms they "
                                     f"have until the next attempt, within {REPUBLISH_SECONDS:g} s)", log)

    async def start(self) -> None:
        """Follow the changes other dbprocs apply, load the stored settings, and publish them."""
        self._subscription = await self.bus.subscribe([self.topics.markets], self.on_message, group=None)
        for settings in await self.stored():
            self.book.apply(settings)
        self._republishing = asyncio.get_running_loop().create_task(self._republish(), name="market-settings")

    async def stop(self) -> None:
        if self._republishing is not None:
            self._republishing.cancel()
            await asyncio.gather(self._republishing, return_exceptions=True)
            self._republishing = None
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None

    async def stored(self) -> list[MarketSettings]:
        """The settings stored for every market an operator changed."""
        return [settings_from_row(r) for r in await MarketSettingsRows.select().run() if r["symbol"] in self.book]

    async def on_message(self, message: Message) -> None:
        try:
            settings = _settings_decoder.decode(message.value)
        except msgspec.DecodeError:
            log.warning("undecodable market settings at %s@%d", message.topic, message.offset)
            return
        if self.book.apply(settings):
            log.info("%s trades on revision %d of its settings now (%s)", settings.symbol, settings.revision,
                     settings.status)

    async def _republish(self) -> None:
        while True:
            try:
                for settings in await self.stored():
                    await self._publish(settings)
            except Exception as exc:  # the database is down: the next round tries again
                log.debug("cannot republish the market settings: %s", exc)
            await asyncio.sleep(REPUBLISH_SECONDS)

    async def _publish(self, settings: MarketSettings) -> None:
        try:
            await self.bus.publish(self.topics.markets, encode(settings), key=settings.symbol.encode())
        except Exception as exc:
            self.publish_failed.failed(exc.details.get("reason", exc) if isinstance(exc, BackendDown) else exc)
        else:
            self.publish_failed.recovered()

    # --- operators ----------------------------------------------------------------------------------------

    @handles(ops.SET_MARKET)
    async def set_market(self, command: SetMarketCommand, command_id: str) -> MarketSettings:
        catalogued = market_of(command.symbol)
        changed: list[MarketSettings] = []

        async def apply() -> MarketSettings:
            select = MarketSettingsRows.select().where(MarketSettingsRows.symbol == command.symbol)
            if not self.db.is_sqlite:  # SQLite's write transactions are exclusive already
                select = select.lock_rows()
            row = await select.first().run()
            before = settings_from_row(row) if row is not None else settings_of(catalogued)
            wanted = {name: value for name in SETTING_FIELDS
                      if (value := getattr(command.update, name)) is not msgspec.UNSET}
            if not wanted:
                raise BadRequest(f"Name at least one of {', '.join(SETTING_FIELDS)} to change.",
                                 code="nothing_to_change")
            after = msgspec.structs.replace(before, **{name: plain(value) if isinstance(value, Decimal) else value
                                                       for name, value in wanted.items()})
            check_settings(after)
            if _terms(after) == _terms(before):
                return before
            at = self.clock()
            after = msgspec.structs.replace(after, revision=before.revision + 1, updated_at=at)
            values = {getattr(MarketSettingsRows, name): getattr(after, name)
                      for name in (*SETTING_FIELDS, "revision", "updated_at")}
            if row is None:
                await MarketSettingsRows.insert(MarketSettingsRows(symbol=command.symbol, **{
                    column._meta.name: value for column, value in values.items()})).run()
            else:
                await MarketSettingsRows.update(values).where(MarketSettingsRows.symbol == command.symbol).run()
            await OperatorAudit.insert(OperatorAudit(
                id=self.ids.uuid(), at=at, operator=command.operator, address=command.address, action="market.update",
                subject=command.symbol, before=encode(_terms(before)).decode(), after=encode(_terms(after)).decode(),
                command_id=command_id)).run()
            changed.append(after)
            return after

        settings = await apply_once(self.db, ops.SET_MARKET, command_id, f"operator:{command.symbol}", apply)
        for new in changed:
            self.book.apply(new)
            log.info("%s changed by %s: revision %d, %s", new.symbol, command.operator, new.revision, _terms(new))
            await self._publish(new)
        return settings

    @handles(ops.MARKET_SETTINGS)
    async def settings(self, query: MarketsQuery) -> MarketsSettings:
        stored = {s.symbol: s for s in await self.stored()}
        for settings in stored.values():
            self.book.apply(settings)
        return MarketsSettings(markets=[stored.get(s.symbol, s) for s in self.book.settings()])

    @handles(ops.AUDIT)
    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        conditions: list[Combinable] = []
        if query.subject is not None:
            conditions.append(OperatorAudit.subject == query.subject)
        if query.cursor is not None:
            cursor = decode_cursor(query.cursor, "audit")
            row_id = cursor.id if self.db.is_sqlite else uuid.UUID(cursor.id)  # SQLite stores UUIDs as text
            conditions.append(WhereRaw("(at, id) < ({}, {})", cursor.at, row_id))
        select = OperatorAudit.select()
        if conditions:
            select = select.where(*conditions)
        rows = await select.order_by(OperatorAudit.at, OperatorAudit.id, ascending=False).limit(
            max(1, min(query.limit, MAX_PAGE + 1))).run()
        return [AuditEntry(id=str(r["id"]), at=r["at"], operator=r["operator"], address=r["address"],
                           action=r["action"], subject=r["subject"], before=msgspec.json.decode(r["before"]),
                           after=msgspec.json.decode(r["after"])) for r in rows]
