"""`ActiveAlerts`: the risk engine's index of alerts. A price alert is one key in its market's `PriceLadder` on
the bid (above: bid ≥ price; below: bid ≤ price), so a tick finds the alerts it reaches without looking at the
others. A margin-level alert is a level the risk book watches for its user (`RiskBook.set_alert_levels`), with
the margin call's machinery. A fired alert is pending (out of the index) until its event removes it, or
`release` puts it back."""

from __future__ import annotations

from decimal import Decimal

from msgspec import Struct

from cfd_dbproc.risk.ladder import PriceLadder
from shared.contracts.quote import Quote
from shared.contracts.rest import Alert


class _Active(Struct, gc=False):
    user_id: str
    alert: Alert
    ticket: int | None = None
    armed: bool = False


class ActiveAlerts:
    def __init__(self) -> None:
        self._alerts: dict[str, _Active] = {}
        self._ladders: dict[str, PriceLadder] = {}

    def __len__(self) -> int:
        return len(self._alerts)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._alerts

    def user_ids(self) -> set[str]:
        return {a.user_id for a in self._alerts.values()}

    def put(self, user_id: str, alert: Alert) -> None:
        """An active alert (indexed); any other status removes it."""
        self.remove(alert.id)
        if alert.status == "active":
            active = self._alerts[alert.id] = _Active(user_id, alert)
            self._arm(active)

    def remove(self, alert_id: str) -> None:
        active = self._alerts.pop(alert_id, None)
        if active is not None:
            self._disarm(active)

    def drop_users(self, user_ids: set[str]) -> None:
        for alert_id in [i for i, a in self._alerts.items() if a.user_id in user_ids]:
            self.remove(alert_id)

    def margin_levels(self, user_id: str) -> tuple[Decimal, ...]:
        """The armed margin-level thresholds of the user (the book watches a fall to each)."""
        return tuple(sorted(a.alert.below for a in self._alerts.values()
                            if a.user_id == user_id and a.armed and a.alert.below is not None))

    def margin_fired(self, user_id: str, level: Decimal) -> list[Alert]:
        """The user's armed margin alerts that `level` is below; each is pending from now on."""
        fired = []
        for active in self._alerts.values():
            below = active.alert.below
            if active.user_id == user_id and active.armed and below is not None and level < below:
                active.armed = False
                fired.append(active.alert)
        return fired

    def on_quote(self, quote: Quote) -> list[tuple[str, Alert]]:
        """The price alerts this quote reaches, as (user id, alert); each is pending from now on."""
        ladder = self._ladders.get(quote.symbol)
        if ladder is None or not len(ladder):
            return []
        fired = []
        for alert_id in ladder.reached(quote.bid, quote.ask, quote.ask - quote.bid):
            active = self._alerts.get(alert_id)
            if active is not None:
                active.ticket, active.armed = None, False
                fired.append((active.user_id, active.alert))
        return fired

    def release(self, alert_id: str) -> str | None:
        """A fired alert's command changed nothing: arm it again. Returns its user, or None if unknown."""
        active = self._alerts.get(alert_id)
        if active is None or active.armed:
            return None
        self._arm(active)
        return active.user_id

    def _arm(self, active: _Active) -> None:
        active.armed = True
        alert = active.alert
        if alert.kind != "price" or alert.symbol is None or alert.price is None:
            return
        ladder = self._ladders.get(alert.symbol)
        if ladder is None:
            ladder = self._ladders[alert.symbol] = PriceLadder()
        active.ticket = ladder.add("bid", alert.condition == "above", alert.price, alert.id)

    def _disarm(self, active: _Active) -> None:
        active.armed = False
        if active.ticket is not None and active.alert.symbol is not None:
            self._ladders[active.alert.symbol].cancel(active.ticket)
            active.ticket = None
