"""Alerts: a price crossing a level (on the broker bid, as MT5's alerts watch it), or an account's margin level
falling below a threshold. Created, listed and deleted for their owner; fired once by the risk engine, which
indexes them like the stops (`alert.fire`, an internal command applied once: an alert no longer active is
left alone)."""

from __future__ import annotations

import uuid
from typing import Any

from piccolo.custom_types import Combinable

from cfd_dbproc.db.tables import Alerts, Users
from cfd_dbproc.trading.engine import Events, TradingEngine
from cfd_dbproc.trading.store import alert_from_row, parse_id
from shared import operations as ops
from shared.bus.rpc import handles
from shared.clock import now_ms
from shared.contracts.bus import AlertsQuery, CreateAlertCommand, DeleteAlertCommand, FireAlertCommand
from shared.contracts.events import AlertEvent
from shared.contracts.rest import Alert, AlertCreate
from shared.errors import NotFound, Rejected
from shared.markets import market_of
from shared.trading import is_multiple, plain

MAX_ACTIVE_ALERTS = 50
"""Active alerts one account may hold at once."""


def check_alert(body: AlertCreate) -> None:
    """Reject (422 `invalid_alert`, naming the field) a price alert without a market, a condition and a price on
    the market's tick, or a margin alert without its level; and any field of the other kind."""
    def refuse(field: str, why: str) -> Rejected:
        return Rejected(why, code="invalid_alert", details={"field": field})

    if body.kind == "price":
        if body.symbol is None:
            raise refuse("symbol", "A price alert needs the market's symbol.")
        market = market_of(body.symbol, field="symbol")
        if body.condition is None:
            raise refuse("condition", 'A price alert needs a condition: "above" or "below".')
        if body.price is None or body.price <= 0 or not is_multiple(body.price, market.price_tick):
            raise refuse("price", f"A price alert needs a positive price, a multiple of {market.price_tick}.")
        if body.below is not None:
            raise refuse("below", "`below` is for margin-level alerts.")
    else:
        if body.below is None or not 0 < body.below <= 100_000:
            raise refuse("below", "A margin-level alert needs `below`: a margin level in percent, like 150.")
        for field in ("symbol", "condition", "price"):
            if getattr(body, field) is not None:
                raise refuse(field, f"`{field}` is for price alerts.")


class AlertHandlers:
    """The price and margin alerts of `shared.operations`, applied through the trading engine."""

    group_commit = True
    """Its commands may share a transaction with others (`Database.group`): they do nothing outside the database
    before the commit (`Database.after_commit`)."""

    def __init__(self, engine: TradingEngine) -> None:
        self.engine = engine

    async def _email(self, user_id: uuid.UUID) -> str | None:
        row = await Users.select(Users.email).where(Users.id == user_id).first().run()
        return None if row is None else row["email"]

    @handles(ops.ALERT_CREATE)
    async def create(self, command: CreateAlertCommand, command_id: str) -> Alert:
        uid = parse_id(command.user_id, "account")
        body = command.alert
        check_alert(body)

        async def apply(events: Events) -> Alert:
            await self.engine.store.balance(uid)  # the account exists
            active = await Alerts.count().where((Alerts.user_id == uid) & (Alerts.status == "active")).run()
            if active >= MAX_ACTIVE_ALERTS:
                raise Rejected(f"An account may have {MAX_ACTIVE_ALERTS} active alerts; delete one first.",
                               code="too_many_alerts", details={"limit": MAX_ACTIVE_ALERTS})
            notify = sorted(set(body.notify) | {"ws"}, key=["ws", "mail"].index)
            alert = Alert(id=self.engine.store.ids(), kind=body.kind, symbol=body.symbol, condition=body.condition,
                          price=plain(body.price), below=plain(body.below), note=body.note, notify=notify,
                          status="active", created_at=now_ms())
            await Alerts.insert(Alerts(id=uuid.UUID(alert.id), user_id=uid, kind=alert.kind, symbol=alert.symbol,
                                       condition=alert.condition, price=alert.price, below=alert.below,
                                       note=alert.note, notify=",".join(notify), status="active",
                                       created_at=alert.created_at)).run()
            events.append(AlertEvent(event="created", user_id=command.user_id, alert=alert))
            return alert

        return await self.engine.apply(ops.ALERT_CREATE, command_id, command.user_id, apply)

    @handles(ops.ALERTS)
    async def alerts(self, query: AlertsQuery) -> list[Alert]:
        conditions: list[Combinable] = [Alerts.user_id == parse_id(query.user_id, "account")]
        if query.status is not None:
            conditions.append(Alerts.status == query.status)
        rows = await Alerts.select().where(*conditions).order_by(Alerts.created_at, ascending=False).limit(500).run()
        return [alert_from_row(r) for r in rows]

    async def _own(self, uid: uuid.UUID, alert_id: str) -> dict[str, Any]:
        row = await Alerts.select().where((Alerts.id == parse_id(alert_id, "alert")) & (Alerts.user_id == uid)
                                          ).first().run()
        if row is None:  # another user's alert is "not found", never "forbidden"
            raise NotFound("No such alert.", code="alert_not_found")
        return row

    @handles(ops.ALERT_DELETE)
    async def delete(self, command: DeleteAlertCommand, command_id: str) -> Alert:
        uid = parse_id(command.user_id, "account")

        async def apply(events: Events) -> Alert:
            alert = alert_from_row(await self._own(uid, command.alert_id))
            await Alerts.delete().where(Alerts.id == uuid.UUID(alert.id)).run()
            events.append(AlertEvent(event="deleted", user_id=command.user_id, alert=alert))
            return alert

        return await self.engine.apply(ops.ALERT_DELETE, command_id, command.user_id, apply)

    @handles(ops.ALERT_FIRE)
    async def fire(self, command: FireAlertCommand, command_id: str) -> None:
        """Mark the alert triggered, once; its event tells the trader (and the server mails it if asked)."""
        uid = parse_id(command.user_id, "account")

        async def apply(events: Events) -> None:
            try:
                row = await self._own(uid, command.alert_id)
            except NotFound:
                return  # deleted meanwhile
            if row["status"] != "active":
                return
            at = now_ms()
            await Alerts.update({Alerts.status: "triggered", Alerts.triggered_at: at,
                                 Alerts.triggered_value: command.value}).where(Alerts.id == row["id"]).run()
            alert = alert_from_row({**row, "status": "triggered", "triggered_at": at,
                                    "triggered_value": command.value})
            email = await self._email(uid) if "mail" in alert.notify else None
            events.append(AlertEvent(event="triggered", user_id=command.user_id, alert=alert,
                                     price=plain(command.value), email=email))

        await self.engine.apply(ops.ALERT_FIRE, command_id, command.user_id, apply)
