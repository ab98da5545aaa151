"""`AccountBar`: balance, equity, used and free margin, and the margin level — amber below 150 %, red below
100 % (a margin call; stop-out comes at 50 %)."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from cfd_client.models import Account
from cfd_tui import format as fmt

AMBER_BELOW = Decimal(150)
RED_BELOW = Decimal(100)


class AccountBar(Widget):
    """The account at a glance, one line; `account` None shows `note` (loading, or trading unavailable).

    Drawn by `render` (a repaint, never a re-layout), since it changes with every tick of a held market.
    """

    COMPONENT_CLASSES = {"account-bar--label", "account-bar--profit", "account-bar--loss", "account-bar--amber",
                         "account-bar--red", "account-bar--note"}

    account: reactive[Account | None] = reactive(None)
    note: reactive[str] = reactive("loading account…")

    def watch_account(self, account: Account | None) -> None:
        level = account.margin_level if account is not None else None
        self.set_class(account is None, "-empty")
        self.set_class(level is not None and RED_BELOW <= level < AMBER_BELOW, "-amber")
        self.set_class(level is not None and level < RED_BELOW, "-red")

    def render(self) -> Text:
        style = self.get_component_rich_style
        account = self.account
        if account is None:
            return Text(self.note, style=style("account-bar--note"))
        pnl = account.unrealized_pnl
        pnl_style = style("account-bar--profit") if pnl > 0 else style("account-bar--loss") if pnl < 0 else ""
        level = account.margin_level
        level_style = style("account-bar--red") if self.has_class("-red") else \
            style("account-bar--amber") if self.has_class("-amber") else ""
        items = (  # (labels from the longest, value, style, drop order when narrow: 0 never)
            (("Balance", "Balance", "Bal"), fmt.money(account.balance), "", 1),
            (("Equity",) * 3, fmt.money(account.equity), "", 0),
            (("Unrealised", "PnL", "PnL"), fmt.money(pnl, signed=True), pnl_style, 0),
            (("Used margin", "Used margin", "Used"), fmt.money(account.used_margin), "", 2),
            (("Free margin", "Free margin", "Free"), fmt.money(account.free_margin), "", 0),
            (("Margin level", "Margin level", "Level"), "—" if level is None else f" {fmt.percent(level)} "
             if level_style else fmt.percent(level), level_style, 0),
        )
        width = self.content_size.width
        for labels, gap, dropped, currency in LAYOUTS:
            text = self._line(items, labels, gap, dropped, account.currency if currency else "")
            if text.cell_len <= width:
                return text
        return text  # the narrowest: cut with an ellipsis

    def _line(self, items, labels: int, gap: int, dropped: int, currency: str) -> Text:
        label = self.get_component_rich_style("account-bar--label")
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for names, value, value_style, drop in items:
            if drop and drop <= dropped:
                continue
            if text:
                text.append(" " * gap)
            text.append(f"{names[labels]} ", label)
            text.append(value, value_style)
        if currency:
            text.append(" " * gap)
            text.append(currency, label)
        return text


# From the widest to the narrowest: (labels: 0 long, 1 medium, 2 short; gap between items; items dropped up to
# this order; currency shown). Equity, unrealised PnL, free margin and the margin level always show.
LAYOUTS = ((0, 3, 0, True), (0, 2, 0, False), (1, 2, 0, False), (2, 2, 0, False), (2, 2, 1, False),
           (2, 2, 2, False), (2, 1, 2, False))
